import hashlib
import re
import urllib.error

import pytest
import torch

from dmnet import ALIASES, PRESETS, CheckpointError, DMNet, load_checkpoint
from dmnet.hub import hash_in_name

from ..conftest import randomize_bn, tiny_preset

R50_CS = "dmnet_r50-d8_4xb2-40k_cityscapes-512x1024"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache; returns its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture
def offline(monkeypatch):
    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", unreachable)


@pytest.fixture
def model():
    return randomize_bn(DMNet(tiny_preset()).eval())


def publish(model, folder, name):
    """Save the weights as `name`, its `{sha8}` replaced by the first 8 hex digits of the file's
    sha256 (as mmseg's publish scripts name files); returns (path, sha256)."""
    folder.mkdir(exist_ok=True)
    tmp = folder / "weights.tmp"
    torch.save(model.state_dict(), tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / name.format(sha8=sha[:8])
    tmp.rename(path)
    return path, sha


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_file_url_is_downloaded_verified_cached_and_reused(tmp_path, hub, model, monkeypatch):
    path, _ = publish(model, tmp_path / "server", "tiny-{sha8}.pth")
    with pytest.warns(UserWarning, match="guessed"):
        loaded = load_checkpoint(path.as_uri())
    assert same_weights(loaded, model)
    assert [p.name for p in hub.iterdir()] == [path.name]  # no partial files left

    def no_download(*args, **kwargs):
        raise AssertionError("the cached file should have been used")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    path.unlink()
    with pytest.warns(UserWarning, match="guessed"):
        assert same_weights(load_checkpoint(path.as_uri()), model)


def test_wrong_hash_in_file_name_is_rejected_and_deleted(tmp_path, hub, model):
    path, sha = publish(model, tmp_path / "server", "tiny-deadbeef.pth")
    with pytest.raises(CheckpointError, match=(
            f"sha256 mismatch for the downloaded file tiny-deadbeef.pth: expected a hash "
            f"starting with deadbeef, got {sha}.*deleted")):
        load_checkpoint(path.as_uri())
    assert list(hub.iterdir()) == []


def test_url_without_hash_in_name_is_not_checked(tmp_path, hub, model):
    path, _ = publish(model, tmp_path / "server", "plain.pth")
    with pytest.warns(UserWarning, match="guessed"):
        assert same_weights(load_checkpoint(path.as_uri()), model)


@pytest.mark.parametrize("name", [R50_CS, "dmnet_r50-d8_512x1024_40k_cityscapes"])
def test_preset_name_downloads_its_official_checkpoint(hub, offline, name):
    url = PRESETS[R50_CS].checkpoint_url
    file = "dmnet_r50-d8_512x1024_40k_cityscapes_20201215_042326-615373cf.pth"
    assert ALIASES["dmnet_r50-d8_512x1024_40k_cityscapes"] == R50_CS and url.endswith(file)
    with pytest.raises(CheckpointError, match=(
            f"could not download {re.escape(url)}: .*Temporary failure in name resolution. "
            f"Without network access, .* put it at {re.escape(str(hub / file))}")):
        load_checkpoint(name)


def test_http_error_is_reported(hub, monkeypatch):
    def not_found(request, *args, **kwargs):
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", None, None)

    monkeypatch.setattr(torch.hub, "urlopen", not_found)
    with pytest.raises(CheckpointError, match="could not download https://example.org/x.pth: "
                                              "HTTP Error 404: Not Found"):
        load_checkpoint("https://example.org/x.pth")
    assert list(hub.iterdir()) == []


def test_corrupt_cached_official_checkpoint_is_caught_and_deleted(hub, offline):
    file = PRESETS[R50_CS].checkpoint_url.rsplit("/", 1)[1]
    hub.mkdir(parents=True)
    (hub / file).write_bytes(b"not the published file")
    with pytest.raises(CheckpointError, match=f"sha256 mismatch for the cached file {file}: "
                                              "expected a hash starting with 615373cf"):
        load_checkpoint(R50_CS)
    assert not (hub / file).exists()


def test_sources_that_are_not_there(tmp_path, hub):
    with pytest.raises(CheckpointError, match="has no published checkpoint"):
        load_checkpoint("dmnet_r18w32-d8_1xb8-7k_shapes-128x128")
    with pytest.raises(CheckpointError, match="could not download file:///.*missing.pth: .*No s"):
        load_checkpoint((tmp_path / "missing.pth").as_uri())
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("name,expected", [
    ("dmnet_r50-d8_512x1024_40k_cityscapes_20201215_042326-615373cf.pth", "615373cf"),
    ("resnet18-f37072fd.pth", "f37072fd"),
    ("model.pth", None),
    ("model-.pth", None),
    ("dmnet_r18-d8_shapes.pth", None),
])
def test_hash_in_name_follows_torch_hub(name, expected):
    assert hash_in_name(name) == expected
