"""What the model learns: loss on the summary and its EOS only (exact token ids)."""

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from phisum.modeling import load_tokenizer
from phisum.params import ModelParams


def test_labels_mask_prompt_and_padding_and_keep_eos(tiny_model_dir, tmp_path):
    tokenizer = load_tokenizer(ModelParams(name=str(tiny_model_dir), revision=None, device="cpu"))
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # Phi-2's situation: pad = eos
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    rows = [
        {"prompt": "Instruct: Summarize.\n\n#Person1#: Hi.\nOutput:\n", "completion": "They greet."},
        {"prompt": "Instruct: Summarize.\n\n#Person1#: Hi there, friend.\nOutput:\n", "completion": "A greeting."},
    ]
    config = SFTConfig(
        output_dir=str(tmp_path), completion_only_loss=True, max_length=128, report_to="none", use_cpu=True
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    raw = AutoTokenizer.from_pretrained(tiny_model_dir)
    eos = raw.eos_token_id
    for i, row in enumerate(rows):
        prompt_ids = raw(row["prompt"])["input_ids"]
        completion_ids = raw(row["prompt"] + row["completion"])["input_ids"][len(prompt_ids) :]
        expected = [-100] * len(prompt_ids) + completion_ids + [eos]
        labels = batch["labels"][i].tolist()
        assert labels[: len(expected)] == expected
        assert set(labels[len(expected) :]) <= {-100}  # padding masked by position
    # The shorter row is padded with EOS ids, and those pad positions carry no loss.
    assert batch["input_ids"][0].tolist()[-1] == eos and batch["labels"][0].tolist()[-1] == -100
