import io
import os
import pickle

import numpy as np
import pytest

from dmnet import safe_pickle


class Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


class Plain:
    """Pickles as NEWOBJ + BUILD; its __setstate__ must not run."""

    def __init__(self, path):
        self.path = path
        self.values = np.arange(3.0)

    def __setstate__(self, state):
        open(state["path"], "w").close()


def load(data: bytes):
    return safe_pickle.load(io.BytesIO(data))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_calls_are_refused_in_every_protocol(tmp_path, protocol):
    marker = tmp_path / "pwned"
    with pytest.raises(safe_pickle.UnsafePickleError, match=r"call posix\.system\('touch "):
        load(pickle.dumps({"x": Exploit(marker)}, protocol=protocol))
    assert not marker.exists()


def test_inst_opcode_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    data = f"(S'touch {marker}'\nios\nsystem\n.".encode()  # protocol 0: INST os.system
    with pytest.raises(safe_pickle.UnsafePickleError, match="os.system"):
        load(data)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_objects_become_inert_stand_ins(tmp_path, protocol):
    marker = tmp_path / "setstate_ran"
    obj = load(pickle.dumps({"obj": Plain(str(marker)), "ok": {1, 2}}, protocol=protocol))
    stand_in = obj["obj"]
    assert isinstance(stand_in, safe_pickle.StandIn)
    assert stand_in.global_name.endswith("test_safe_pickle.Plain")
    assert stand_in.state["path"] == str(marker)
    array = type(stand_in.state["values"]).global_name  # protocol 5 pickles arrays differently
    assert array.endswith(("multiarray._reconstruct", "numeric._frombuffer"))
    assert obj["ok"] == {1, 2}  # allowlisted builtins are real
    assert not marker.exists()
