import pytest
import torch

from lavr_core.errors import InputError
from lavr_core.grid import GridLayout


def test_view_major_indexing_round_trips():
    g = GridLayout(views=3, times=4)
    frames = torch.arange(12)[:, None]
    grid = g.to_grid(frames)
    assert grid[2, 1].item() == g.index(2, 1) == 9
    assert torch.equal(g.from_grid(grid), frames)
    assert g.row(frames, 1).flatten().tolist() == [4, 5, 6, 7]
    assert g.column(frames, 3).flatten().tolist() == [3, 7, 11]


@pytest.mark.parametrize("kw", [dict(views=0, times=2), dict(views=2, times=True), dict(views=2, times=2, fps=0)])
def test_bad_layouts_are_refused(kw):
    with pytest.raises(InputError):
        GridLayout(**kw)


def test_frame_count_mismatch_names_the_fix():
    with pytest.raises(InputError, match="2 views x 3 timesteps = 6"):
        GridLayout(2, 3).check_frames(torch.zeros(5, 2))
