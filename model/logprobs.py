"""Per-token log-probabilities of answers given prompts: the one call SFT and DPO make on a model.

    logps, mask = answer_logprobs(model, prompts, answers, pad_id)   # both (B, longest answer)

Decoder-only (Llama): each row is prompt + answer, right-padded; the logits at position t predict
token t+1, so the answer's tokens are scored by the positions just before them.
Encoder-decoder (T5): the prompt goes to the encoder; the decoder reads <start> + answer[:-1] and
predicts the answer. Either way, padding and prompt tokens never reach the loss (mask = 0).
"""
import torch
import torch.nn.functional as F


def _right_pad(rows, pad_id, device):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids.to(device), mask.to(device)


def answer_logprobs(model, prompts: list[list[int]], answers: list[list[int]], pad_id: int):
    """log p(answer token | prompt, earlier answer tokens) for each answer token, and its mask."""
    core = getattr(model, "module", model)  # under DistributedDataParallel: call the wrapper, read the model
    device = core.lm_head.weight.device
    labels, mask = _right_pad(answers, pad_id, device)
    if core.config.is_encoder_decoder:
        enc_ids, enc_mask = _right_pad(prompts, pad_id, device)
        start = torch.full((len(answers), 1), core.config.decoder_start_token_id, dtype=torch.long, device=device)
        logits = model(enc_ids, attention_mask=enc_mask, decoder_input_ids=torch.cat([start, labels[:, :-1]], 1))
    else:
        ids, full_mask = _right_pad([p + a for p, a in zip(prompts, answers)], pad_id, device)
        # Row i's answer starts at len(prompt_i); its tokens are predicted from one position earlier.
        positions = torch.tensor([len(p) - 1 for p in prompts], device=device)[:, None] + torch.arange(
            labels.shape[1], device=device)[None]
        positions = positions.clamp(max=ids.shape[1] - 1)        # (B, longest answer); padding's are masked
        logits = model(ids, attention_mask=full_mask, logits_at=positions)  # (B, longest answer, V)
    logps = -F.cross_entropy(logits.float().transpose(1, 2), labels, reduction="none")
    return logps * mask, mask
