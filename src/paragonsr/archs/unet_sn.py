"""UNetDiscriminatorSN — Real-ESRGAN's U-Net discriminator with spectral normalisation.

Same modules and state-dict keys as Real-ESRGAN/BasicSR (``conv0`` … ``conv9``; spectral-normed convs carry
``weight_orig``, ``weight_u``, ``weight_v`` from ``torch.nn.utils.spectral_norm``), so Real-ESRGAN ``net_d``
checkpoints load strictly. Differences that do not change results on the usual even sizes: the ×2 bilinear
upsample targets the skip's exact size, so odd inputs work instead of failing on the skip addition.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

from paragonsr.registry import ARCH_REGISTRY


@ARCH_REGISTRY.register("unetdiscriminatorsn", aliases=("UNetDiscriminatorSN", "unet_sn"))
class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN discriminator: 3 SN downs, 3 bilinear-up SN convs with additive skips, 2 SN convs, 1 logit map.

    Args:
        num_in_ch: channels of the images judged (the generator's output channels).
        num_feat: width of the first level (doubled at each of the 3 downs).
        skip_connection: add the encoder features to the decoder's (U-Net skips).
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        self.skip_connection = skip_connection
        self.in_ch, self.out_ch, self.scale = num_in_ch, 1, 1
        nf = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, nf, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    @staticmethod
    def _up(x: Tensor, ref: Tensor) -> Tensor:
        return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < 8:
            raise ValueError(f"UNetDiscriminatorSN needs inputs of at least 8x8, got {tuple(x.shape[-2:])}")
        x0 = F.leaky_relu(self.conv0(x), 0.2)
        x1 = F.leaky_relu(self.conv1(x0), 0.2)
        x2 = F.leaky_relu(self.conv2(x1), 0.2)
        x3 = F.leaky_relu(self.conv3(x2), 0.2)
        x4 = F.leaky_relu(self.conv4(self._up(x3, x2)), 0.2)
        if self.skip_connection:
            x4 = x4 + x2
        x5 = F.leaky_relu(self.conv5(self._up(x4, x1)), 0.2)
        if self.skip_connection:
            x5 = x5 + x1
        x6 = F.leaky_relu(self.conv6(self._up(x5, x0)), 0.2)
        if self.skip_connection:
            x6 = x6 + x0
        out = F.leaky_relu(self.conv7(x6), 0.2)
        out = F.leaky_relu(self.conv8(out), 0.2)
        return self.conv9(out)
