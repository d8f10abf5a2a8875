"""phisum.export's command: full precision by default, as docs/t4.md ("Export") says."""

import json

from click.testing import CliRunner
from safetensors import safe_open


def test_export_writes_float32_by_default_and_a_smaller_dtype_when_asked(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from phisum.export import main

    adapter_dir = tmp_path / "adapter"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(adapter_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(adapter_dir)  # the train stage saves it too
    (adapter_dir / "params.json").write_text(json.dumps({"model": {"name": str(tiny_model_dir), "revision": None}}))
    for args, dtype in (([], "F32"), (["--dtype", "bfloat16"], "BF16")):
        out_dir = tmp_path / f"merged-{dtype}"
        result = CliRunner().invoke(main, ["--adapter-dir", str(adapter_dir), "--out-dir", str(out_dir), *args])
        assert result.exit_code == 0, result.output
        with safe_open(out_dir / "model.safetensors", "pt") as weights:
            dtypes = {weights.get_slice(name).get_dtype() for name in weights.keys()}  # noqa: SIM118
        assert dtypes == {dtype}
