"""PyTorch twins of lstmkd's zoo, under the parameter names lstmkd imports and exports.

The CIFAR families follow RepDistiller's module trees (HobbitLong/RepDistiller,
models/resnet.py, wrn.py, vgg.py) so that a state_dict saved by RepDistiller's training
scripts loads here with strict=True; the ImageNet families are torchvision's own classes.
Only the forward pass is reproduced (no is_feat/preact taps): the interop checks compare
logits alone.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

IMAGENET_FAMILIES = ("resnet18", "resnet34", "resnet50", "mobilenetv2")
CIFAR_RESNET_DEPTHS = {
    "resnet8": 8, "resnet14": 14, "resnet20": 20, "resnet32": 32,
    "resnet44": 44, "resnet56": 56, "resnet110": 110,
}
WRN = {"wrn_16_2": (16, 2), "wrn_40_2": (40, 2)}
VGG_CFG = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
}
CIFAR_FAMILIES = (
    tuple(CIFAR_RESNET_DEPTHS) + ("resnet8x4", "resnet32x4") + tuple(WRN)
    + tuple(VGG_CFG) + ("mobilenetv2_cifar",)
)
ALL_FAMILIES = CIFAR_FAMILIES + IMAGENET_FAMILIES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)


def _conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class CifarBasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        # RepDistiller stores None (no keys) when the shapes already agree.
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(out + skip)


class CifarResNet(nn.Module):
    """RepDistiller's ResNet with BasicBlock: depth 6n+2, three stages of n blocks."""

    def __init__(self, depth, widths, num_classes):
        super().__init__()
        assert (depth - 2) % 6 == 0
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        for k, (cout, stride) in enumerate(zip(widths[1:], (1, 2, 2)), start=1):
            blocks = []
            for i in range(n):
                blocks.append(CifarBasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
            setattr(self, f"layer{k}", nn.Sequential(*blocks))
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        # RepDistiller uses AvgPool2d(8), which is the global mean at 32x32 only; the global
        # mean is what lstmkd computes at every size.
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


class WrnBlock(nn.Module):
    """Pre-activation block; when the width changes, the shortcut sees relu(bn1(x))."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.equal = cin == cout
        self.convShortcut = None if self.equal else nn.Conv2d(
            cin, cout, 1, stride=stride, bias=False)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.equal else self.convShortcut(pre))


class WrnStage(nn.Module):
    # The extra `.layer` level is RepDistiller's NetworkBlock; it is in every key.
    def __init__(self, n, cin, cout, stride):
        super().__init__()
        self.layer = nn.Sequential(*[
            WrnBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, widen, num_classes):
        super().__init__()
        assert (depth - 4) % 6 == 0
        n = (depth - 4) // 6
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, ch[0], 3, padding=1, bias=False)
        self.block1 = WrnStage(n, ch[0], ch[1], 1)
        self.block2 = WrnStage(n, ch[1], ch[2], 2)
        self.block3 = WrnStage(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = nn.Linear(ch[3], num_classes)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        x = F.relu(self.bn1(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Vgg(nn.Module):
    """RepDistiller's VGG with batch norm (vgg8 = its vgg8_bn, and so on)."""

    def __init__(self, cfg, num_classes):
        super().__init__()
        cin = 3
        for b, widths in enumerate(cfg):
            layers = []
            for w in widths:
                layers += [nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
                cin = w
            # The block's last ReLU is dropped (RepDistiller taps the pre-activation) and
            # applied in forward instead; indices of the remaining entries are unchanged.
            setattr(self, f"block{b}", nn.Sequential(*layers[:-1]))
        for p in range(4):
            setattr(self, f"pool{p}", nn.MaxPool2d(2, 2))
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        h = x.shape[2]
        x = F.relu(self.block0(x))
        x = F.relu(self.block1(self.pool0(x)))
        x = F.relu(self.block2(self.pool1(x)))
        x = F.relu(self.block3(self.pool2(x)))
        # RepDistiller tests h == 64 (Tiny-ImageNet); lstmkd pools from 64 up, identical at
        # the sizes RepDistiller was trained on.
        if h >= 64:
            x = self.pool3(x)
        x = F.relu(self.block4(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def mobilenetv2_cifar(num_classes, width=1.0):
    """torchvision's MobileNetV2 with the two early stride-2 convolutions at stride 1, so a
    32x32 input still ends at 4x4 rather than 1x1."""
    m = torchvision.models.mobilenet_v2(num_classes=num_classes, width_mult=width)
    m.features[0][0].stride = (1, 1)
    # features.2 is the first block of the 24-channel stage: conv.0 expands, conv.1 is the
    # depthwise conv that carries the stride. Its residual flag stays off (16 != 24 channels).
    m.features[2].conv[1][0].stride = (1, 1)
    return m


def _scaled(widths, width):
    """lstmkd's width multiplier for CIFAR ResNets: the nearest channel count, at least one."""
    return [max(1, int(w * width + 0.5)) for w in widths]  # halves round up, as Rust's round


def build(name, num_classes, width=1.0):
    if name in CIFAR_RESNET_DEPTHS:
        return CifarResNet(CIFAR_RESNET_DEPTHS[name], _scaled([16, 16, 32, 64], width), num_classes)
    if name == "resnet8x4":
        return CifarResNet(8, _scaled([32, 64, 128, 256], width), num_classes)
    if name == "resnet32x4":
        return CifarResNet(32, _scaled([32, 64, 128, 256], width), num_classes)
    if name in WRN:
        return WideResNet(*WRN[name], num_classes)
    if name in VGG_CFG:
        return Vgg(VGG_CFG[name], num_classes)
    if name == "mobilenetv2_cifar":
        return mobilenetv2_cifar(num_classes, width)
    if name == "mobilenetv2":
        return torchvision.models.mobilenet_v2(num_classes=num_classes, width_mult=width)
    if name in ("resnet18", "resnet34", "resnet50"):
        return getattr(torchvision.models, name)(num_classes=num_classes)
    raise ValueError(f"unknown family {name!r}; known: {', '.join(ALL_FAMILIES)}")


def defaults(name):
    """(input size for the checks, mean, std, resize-before-crop or 0) as lstmkd assumes."""
    if name in IMAGENET_FAMILIES:
        return (3, 224, 224), IMAGENET_MEAN, IMAGENET_STD, 256
    return (3, 32, 32), CIFAR100_MEAN, CIFAR100_STD, 0


def _residual_tails(model):
    """The last layer of each residual branch (modules, by id)."""
    from torchvision.models.mobilenetv2 import InvertedResidual
    from torchvision.models.resnet import BasicBlock, Bottleneck
    tails = set()
    for m in model.modules():
        if isinstance(m, (CifarBasicBlock, BasicBlock)):
            tails.add(id(m.bn2))
        elif isinstance(m, Bottleneck):
            tails.add(id(m.bn3))
        elif isinstance(m, WrnBlock):
            tails.add(id(m.conv2))
        elif isinstance(m, InvertedResidual) and m.use_res_connect:
            tails.add(id(m.conv[-1]))
    return tails


def randomize_(model, seed):
    """Seeded random weights, and batch-norm statistics far from (0, 1), so that a loader
    that drops or swaps running_mean/running_var, or weight and bias, changes the logits."""
    g = torch.Generator().manual_seed(seed)
    # Each residual branch adds its variance to the trunk's; at full scale resnet110's
    # logits reach ~1e9 and a tolerance relative to them checks little. Damped tails keep
    # the logits O(1..100) at every depth.
    tails = _residual_tails(model)
    with torch.no_grad():
        for m in model.modules():
            tail = 0.2 if id(m) in tails else 1.0
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                std = tail * (2.0 / fan_in) ** 0.5
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_((torch.rand(c, generator=g) + 0.5) * tail)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.num_batches_tracked.fill_(int(torch.randint(1, 10000, (1,), generator=g)))
    return model.eval()


def param_count(model):
    return sum(p.numel() for p in model.parameters())
