import time, torch, sys
from atrous.models import build_model
torch.manual_seed(0)
def run(dtype, cl, bs=8, hw=(240,320), n=4):
    m = build_model("deeplabv3plus", num_classes=11, backbone="resnet18", output_stride=16)
    m.train()
    x = torch.randn(bs,3,*hw); y = torch.randint(0,11,(bs,*hw))
    if cl:
        m = m.to(memory_format=torch.channels_last); x = x.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    ts=[]
    for i in range(n+1):
        t=time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype=="bf16"):
            out = m(x); out = out["out"] if isinstance(out, dict) else out
            loss = torch.nn.functional.cross_entropy(out.float(), y)
        opt.zero_grad(); loss.backward(); opt.step()
        ts.append(time.perf_counter()-t)
    return sum(ts[1:])/n
for dtype in ["fp32","bf16"]:
    for cl in [False, True]:
        print(dtype, "channels_last" if cl else "contig", f"{run(dtype,cl):.3f} s/iter", flush=True)
