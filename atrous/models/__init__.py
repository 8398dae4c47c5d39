"""Model zoo: dilated backbones, atrous heads, the segmentor, registry and weights I/O.

``build_model(name, num_classes=..., **options)`` builds any registered model;
``list_models()`` names them; ``save_pretrained`` / ``load_pretrained`` store and
rebuild models as safetensors + JSON.

Where things are::

    models/registry.py        name -> builder table (build_model, list_models)
    models/builders/          the builders: deeplab.py (deeplabv3, deeplabv3plus, fcn,
                              duc_hdc), lraspp.py, drn.py (drn_c_26, drn_d_22),
                              dilated_net.py (the plain dilated stack)
    models/backbones/         trunks with feature_info: resnet.py, mobilenet.py,
                              mobilenet_v3.py, efficientnet_lite.py, drn.py,
                              timm_encoder.py (any timm model); factory.py
                              picks one by name; base.py holds the contract
    models/heads/             heads: aspp.py (ASPP, image pooling), deeplab.py (the
                              DeepLabV3 / V3+ heads), fcn.py, duc.py, lraspp.py, context.py
                              (Yu & Koltun's context module)
    models/realtime/          ERFNet, DABNet, CGNet: encoder and builder in one file each
    models/segmentor.py       backbone + head + resize: what every builder returns
    models/config.py          a builder's arguments as the JSON config a saved model keeps
    models/gates.py           channel gates (squeeze-and-excitation, LR-ASPP), for the analysis
    models/summary.py         parameters and multiply-accumulates (atrous models)
    models/pretrained.py      save_pretrained / load_pretrained, the shipped models
    models/backbone_weights.py  ImageNet initialisation (model.backbone_weights)
    models/torchvision_weights.py  torchvision's weights and segmentation models
    models/weights/           the shipped models (safetensors + config.json + model card)
"""

from atrous.models.pretrained import load_pretrained, save_pretrained, shipped_models
from atrous.models.registry import build_model, list_models
from atrous.models.segmentor import Segmentor
from atrous.models.torchvision_weights import from_torchvision, load_torchvision_backbone

__all__ = [
    "Segmentor",
    "build_model",
    "from_torchvision",
    "list_models",
    "load_pretrained",
    "load_torchvision_backbone",
    "save_pretrained",
    "shipped_models",
]
