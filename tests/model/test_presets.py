"""Tests for resattn.model.presets: the notebooks' networks, exactly."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from torch import nn

import resattn
from resattn import NetSpec, build, presets


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _params(spec: NetSpec) -> int:
    return sum(p.numel() for p in build(spec).parameters())


def test_seed_pattern2_parameter_count() -> None:
    assert _params(presets.seed_pattern2()) == 475_374


def test_seed_pattern4_parameter_count() -> None:
    assert _params(presets.seed_pattern4()) == 478_150


def test_related_presets_parameter_counts() -> None:
    # seed_pattern2 minus its two CBAMs: (64·4 + 4·64 + 2·49) + (128·8 + 8·128 + 2·49) = 2,756.
    assert _params(presets.seed_residual()) == 475_374 - 2_756
    # seed_pattern2 plus two λ.
    assert _params(presets.seed_pattern2_mix()) == 475_374 + 2


@pytest.mark.parametrize("make", [presets.seed_pattern2, presets.seed_pattern4])
def test_presets_map_cifar_batch_to_logits(make) -> None:
    model = build(make()).eval()
    with torch.no_grad():
        y = model(torch.randn(4, 3, 32, 32))
    assert y.shape == (4, 10)
    assert torch.isfinite(y).all()


def test_preset_specs() -> None:
    p2 = presets.seed_pattern2()
    assert p2.names() == ("block1", "p2_1", "p2_2", "block2")
    assert [b.kind for b in p2.layers] == ["plain", "pattern2", "pattern2", "plain"]
    assert [(b.out_channels, b.stride) for b in p2.layers] == [(64, 1), (64, 1), (128, 2), (128, 1)]
    assert p2.layers[1].attention == resattn.AttentionSpec("cbam", reduction=16, spatial_kernel=7)
    p4 = presets.seed_pattern4()
    assert p4.names() == ("block1", "p4_1", "p4_2", "block2")
    blk = p4.layers[2]
    assert (blk.kind, blk.gamma_s, blk.gamma_r, blk.gamma_learnable, blk.residual_path) == (
        "pattern4",
        0.0,
        0.1,
        True,
        "gated",
    )
    assert blk.skip_attention == blk.attention == resattn.AttentionSpec("se", reduction=16)
    mix = presets.seed_pattern2_mix(lam=0.3)
    assert all(b.lam == 0.3 for b in mix.layers if b.kind == "pattern2_mix")
    gn = presets.seed_backbone(p2.layers[1], p2.layers[2], norm="gn")
    assert gn.stem_norm == "gn" and gn.layers[0].norm == "gn"
    for spec in (p2, p4, mix, presets.seed_residual()):
        assert NetSpec.from_json(spec.to_json()) == spec


def test_preset_arguments_change_the_model() -> None:
    assert _params(presets.seed_pattern4(num_classes=100)) == 478_150 + 90 * 129
    assert _params(presets.seed_pattern4(reduction_s=4)) != 478_150
    m = build(presets.seed_pattern4(gamma_s=0.2, gamma_r=0.3))
    assert m.layers.p4_1.skip_op.gamma.item() == pytest.approx(0.2)
    assert m.layers.p4_2.branch_op.gamma.item() == pytest.approx(0.3)


# --------------------------------------------------------------------------------------------
# Equivalence with the notebooks' networks (their code, verbatim in spirit), on the same weights
# --------------------------------------------------------------------------------------------


class _ChannelAttention(nn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1, bias=False),
        )
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.mlp(self.avg_pool(x)) + self.mlp(self.max_pool(x)))


class _SpatialAttention(nn.Module):
    def __init__(self, kernel_size=7):
        super().__init__()
        padding = 3 if kernel_size == 7 else 1
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=padding, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        avg_map = torch.mean(x, dim=1, keepdim=True)
        max_map, _ = torch.max(x, dim=1, keepdim=True)
        return self.sigmoid(self.conv(torch.cat([avg_map, max_map], dim=1)))


class _CBAM(nn.Module):
    def __init__(self, channels, reduction=16, spatial_kernel=7):
        super().__init__()
        self.ca = _ChannelAttention(channels, reduction=reduction)
        self.sa = _SpatialAttention(kernel_size=spatial_kernel)

    def forward(self, x):
        x = self.ca(x) * x
        return self.sa(x) * x


class _Pattern2ResidualCBAM(nn.Module):
    def __init__(self, in_ch, out_ch, stride=1, reduction=16, spatial_kernel=7):
        super().__init__()
        self.act = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.cbam = _CBAM(out_ch, reduction=reduction, spatial_kernel=spatial_kernel)
        self.skip = None
        if stride != 1 or in_ch != out_ch:
            self.skip = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x):
        identity = x if self.skip is None else self.skip(x)
        f = self.act(self.bn1(self.conv1(x)))
        f = self.bn2(self.conv2(f))
        return self.act(self.cbam(identity + f))


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class _SimpleCNNPattern2(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = _conv_bn_relu(3, 32)
        self.block1 = _conv_bn_relu(32, 64)
        self.p2_1 = _Pattern2ResidualCBAM(64, 64, stride=1)
        self.p2_2 = _Pattern2ResidualCBAM(64, 128, stride=2)
        self.block2 = _conv_bn_relu(128, 128)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.head(self.block2(self.p2_2(self.p2_1(self.block1(self.stem(x))))))


class _FxConv(nn.Module):
    def __init__(self, in_ch, out_ch, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)

    def forward(self, x):
        return self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class _SEMask(nn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.net(self.pool(x))


class _NearIdentityGate(nn.Module):
    def __init__(self, mask, gamma_init=0.0):
        super().__init__()
        self.mask = mask
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init)))

    def forward(self, x):
        return x * (1.0 + self.gamma * self.mask(x))


class _Pattern4Block(nn.Module):
    def __init__(self, in_ch, out_ch, stride=1, gamma_s_init=0.0, gamma_r_init=0.1):
        super().__init__()
        if stride == 1 and in_ch == out_ch:
            self.skip = nn.Identity()
        else:
            self.skip = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )
        self.F = _FxConv(in_ch, out_ch, stride=stride)
        self.As = _NearIdentityGate(_SEMask(out_ch, 16), gamma_s_init)
        self.Ar = _NearIdentityGate(_SEMask(out_ch, 16), gamma_r_init)
        self.out_act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.out_act(self.As(self.skip(x)) + self.Ar(self.F(x)))


class _Pattern4Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = _conv_bn_relu(3, 32)
        self.conv1 = _conv_bn_relu(32, 64)
        self.p4_1 = _Pattern4Block(64, 64, stride=1)
        self.p4_2 = _Pattern4Block(64, 128, stride=2)
        self.conv2 = _conv_bn_relu(128, 128)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.head(self.conv2(self.p4_2(self.p4_1(self.conv1(self.stem(x))))))


# Notebook key -> resattn key, by ordered regex rewrites.
P2_RULES = [
    (r"^stem\.0\.", "stem.conv."),
    (r"^stem\.1\.", "stem.norm."),
    (r"^block(\d)\.0\.", r"layers.block\1.conv."),
    (r"^block(\d)\.1\.", r"layers.block\1.norm."),
    (r"^(p2_\d)\.conv(\d)\.", r"layers.\1.branch.conv\2."),
    (r"^(p2_\d)\.bn(\d)\.", r"layers.\1.branch.norm\2."),
    (r"^(p2_\d)\.skip\.", r"layers.\1.skip."),
    (r"^(p2_\d)\.cbam\.ca\.mlp\.0\.", r"layers.\1.post.mask.channel.fc1."),
    (r"^(p2_\d)\.cbam\.ca\.mlp\.2\.", r"layers.\1.post.mask.channel.fc2."),
    (r"^(p2_\d)\.cbam\.sa\.conv\.", r"layers.\1.post.mask.spatial.conv."),
    (r"^head\.2\.", "head."),
]
P4_RULES = [
    (r"^stem\.0\.", "stem.conv."),
    (r"^stem\.1\.", "stem.norm."),
    (r"^conv1\.0\.", "layers.block1.conv."),
    (r"^conv1\.1\.", "layers.block1.norm."),
    (r"^conv2\.0\.", "layers.block2.conv."),
    (r"^conv2\.1\.", "layers.block2.norm."),
    (r"^(p4_\d)\.F\.conv(\d)\.", r"layers.\1.branch.conv\2."),
    (r"^(p4_\d)\.F\.bn(\d)\.", r"layers.\1.branch.norm\2."),
    (r"^(p4_\d)\.skip\.", r"layers.\1.skip."),
    (r"^(p4_\d)\.As\.gamma$", r"layers.\1.skip_op.gamma"),
    (r"^(p4_\d)\.Ar\.gamma$", r"layers.\1.branch_op.gamma"),
    (r"^(p4_\d)\.As\.mask\.net\.0\.", r"layers.\1.skip_op.mask.fc1."),
    (r"^(p4_\d)\.As\.mask\.net\.2\.", r"layers.\1.skip_op.mask.fc2."),
    (r"^(p4_\d)\.Ar\.mask\.net\.0\.", r"layers.\1.branch_op.mask.fc1."),
    (r"^(p4_\d)\.Ar\.mask\.net\.2\.", r"layers.\1.branch_op.mask.fc2."),
    (r"^head\.2\.", "head."),
]


def _translate(state: dict[str, torch.Tensor], rules: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            raise AssertionError(f"no rule for notebook key {key}")
    return out


def _perturb(model: nn.Module) -> None:
    """Random BN statistics/affines and gates, so that every mapped value matters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
            if isinstance(m, _NearIdentityGate):
                m.gamma.uniform_(0.2, 0.8)


@pytest.mark.parametrize(
    ("notebook", "spec", "rules"),
    [(_SimpleCNNPattern2, presets.seed_pattern2, P2_RULES), (_Pattern4Net, presets.seed_pattern4, P4_RULES)],
    ids=["SimpleCNN_Pattern2", "Pattern4Net"],
)
def test_preset_equals_notebook_network(notebook, spec, rules) -> None:
    ref = notebook()
    ours = build(spec())
    assert sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in ours.parameters())
    _perturb(ref)
    state = _translate(ref.state_dict(), rules)
    assert set(state) == set(ours.state_dict())
    ours.load_state_dict(state, strict=True)
    x = torch.randn(4, 3, 32, 32)
    for training in (False, True):
        ref.train(training)
        ours.train(training)
        with torch.no_grad():
            assert torch.allclose(ours(x), ref(x), atol=1e-5, rtol=1e-4), f"training={training}"


def test_print_model_in_subprocess() -> None:
    code = "import resattn; print(resattn.build(resattn.presets.seed_pattern4()))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Net(")
    for word in ("p4_1", "p4_2", "block1", "block2", "NearIdentityGate", "SqueezeExcite", "Linear"):
        assert word in proc.stdout
