"""Cost of dilation: parameters and MACs of DeepLabv3 / FCN at output stride 8, 16 and 32.

Dilating a stage instead of striding keeps the parameter count and multiplies the MACs
of every later layer by 4 per halved stride; this prints by how much, at 512x512,
counted on the meta device (deterministic, no timing involved).

Usage: .venv/bin/python benchmarks/models_output_stride.py
"""

from __future__ import annotations

from atrous.models.summary import summarize


def main() -> None:
    print(f"{'model':<10} {'backbone':<13} {'OS':>3} {'params':>8} {'GMACs@512':>10} {'x OS32':>7}")
    for name in ("deeplabv3", "fcn"):
        for backbone in ("resnet50", "resnet101", "mobilenet_v2"):
            rows = {
                os_: summarize(name, backbone=backbone, output_stride=os_) for os_ in (32, 16, 8)
            }
            for os_ in (8, 16, 32):
                row = rows[os_]
                ratio = row.macs / rows[32].macs
                print(
                    f"{name:<10} {backbone:<13} {os_:>3} {row.params / 1e6:>7.2f}M "
                    f"{row.macs / 1e9:>10.2f} {ratio:>6.2f}x"
                )


if __name__ == "__main__":
    main()
