import pytest
import torch

from accvideo.core.schedules import check_key_indices, key_sigmas, shifted_sigmas, uniform_key_indices
from accvideo.errors import AccVideoError


def test_paper_key_sigmas_shift7_n50():
    """docs/method.md 1: indices {0,10,...,50} of a 50-step grid at shift 7."""
    sig = key_sigmas(shifted_sigmas(50, 7.0), uniform_key_indices(50, 5))
    # exact values: 7s/(1+6s) for s = 1, .8, .6, .4, .2, 0
    exact = torch.tensor([1.0, 5.6 / 5.8, 4.2 / 4.6, 2.8 / 3.4, 1.4 / 2.2, 0.0], dtype=torch.float64)
    torch.testing.assert_close(sig, exact, atol=1e-12, rtol=0)
    # the paper's printed values; its 0.9651 is a typo for 5.6/5.8 = 0.96552 (off by 4e-4)
    paper = torch.tensor([1.0, 0.9651, 0.9130, 0.8235, 0.6363, 0.0], dtype=torch.float64)
    diff = (sig - paper).abs()
    assert diff[[0, 2, 3, 4, 5]].max() < 1e-4
    assert diff[1] < 5e-4


def test_grid_endpoints_and_monotone():
    sig = shifted_sigmas(7, 3.0)
    assert sig.shape == (8,) and sig[0] == 1 and sig[-1] == 0
    assert (sig[1:] < sig[:-1]).all()
    # shift 1 is the uniform grid
    torch.testing.assert_close(shifted_sigmas(4, 1.0), torch.tensor([1, 0.75, 0.5, 0.25, 0], dtype=torch.float64))


def test_key_indices_uniform_and_explicit():
    assert uniform_key_indices(50, 10) == list(range(0, 51, 5))
    assert check_key_indices([0, 5, 20, 50], 50) == [0, 5, 20, 50]
    for bad in ([0, 10, 10, 50], [5, 50], [0, 49], [0]):
        with pytest.raises(AccVideoError, match="rise strictly"):
            check_key_indices(bad, 50)
    with pytest.raises(AccVideoError, match="divide"):
        uniform_key_indices(50, 3)
    with pytest.raises(AccVideoError, match="at least 1"):
        shifted_sigmas(0, 5.0)
