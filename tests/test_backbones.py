"""NAFNet and IAT: shapes on odd sizes, gradients, and the parameter counts of published configs."""
import pytest
import torch
from basicsr.archs import build_network

import basicsr_diffloss  # noqa: F401  (registers the archs)

NAFNET_GOPRO_WIDTH32 = dict(width=32, enc_blk_nums=[1, 1, 1, 28], middle_blk_num=1, dec_blk_nums=[1, 1, 1, 1])
NAFNET_SIDD_WIDTH32 = dict(width=32, enc_blk_nums=[2, 2, 4, 8], middle_blk_num=12, dec_blk_nums=[2, 2, 2, 2])
SMALL_NAFNET = dict(type='NAFNet', width=8, enc_blk_nums=[1, 2], middle_blk_num=1, dec_blk_nums=[1, 1])


def count(network):
    return sum(p.numel() for p in network.parameters())


@pytest.mark.parametrize('config, exact, published', [
    (NAFNET_GOPRO_WIDTH32, 17_111_907, 17.1e6),
    (NAFNET_SIDD_WIDTH32, 29_159_715, 29.16e6),
])
def test_nafnet_published_configs_have_the_published_size(config, exact, published):
    network = build_network(dict(type='NAFNet', img_channel=3, **config))
    assert count(network) == exact
    assert abs(count(network) - published) / published < 0.005


def test_iat_has_the_published_size():
    assert count(build_network(dict(type='IAT'))) == 91_154  # published: about 91k ("90k+")


@pytest.mark.parametrize('arch', ['NAFNet', 'NAFNetLocal'])
@pytest.mark.parametrize('size', [(16, 16), (13, 21), (7, 5), (1, 3)])
def test_nafnet_keeps_any_input_size(arch, size):
    network = build_network(dict(SMALL_NAFNET, type=arch))
    image = torch.rand(2, 3, *size)
    assert network(image).shape == image.shape


def test_nafnet_rejects_unpaired_stages():
    with pytest.raises(ValueError, match="'enc_blk_nums'.*'dec_blk_nums'"):
        build_network(dict(type='NAFNet', enc_blk_nums=[1, 1], dec_blk_nums=[1]))


@pytest.mark.parametrize('size', [(16, 16), (17, 11)])
def test_iat_keeps_the_size_and_the_range(size):
    image = torch.rand(2, 3, *size)
    output = build_network(dict(type='IAT')).eval()(image)
    assert output.shape == image.shape
    assert 0 <= output.min() and output.max() <= 1


def test_iat_global_branch_starts_as_the_identity():
    gamma, colour = build_network(dict(type='IAT')).global_net(torch.rand(2, 3, 24, 24))
    torch.testing.assert_close(gamma, torch.ones(2, 1))
    torch.testing.assert_close(colour, torch.eye(3).expand(2, 3, 3))


@pytest.mark.parametrize('options', [SMALL_NAFNET, dict(type='IAT')], ids=['NAFNet', 'IAT'])
def test_every_parameter_learns(options):
    """Zero-initialised residual scales (NAFNet) and values (IAT's global queries) stop gradients at step 0; after one
    step every parameter gets one."""
    torch.manual_seed(0)
    network = build_network(dict(options))
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    lq, gt = torch.rand(2, 3, 16, 12) * 0.5, torch.rand(2, 3, 16, 12)
    for _ in range(2):
        optimizer.zero_grad()
        torch.nn.functional.l1_loss(network(lq), gt).backward()
        optimizer.step()
    silent = [name for name, p in network.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent
