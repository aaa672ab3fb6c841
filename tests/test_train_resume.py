"""A killed training continues from its last finished epoch (`rankers.train_state`) to the model an uninterrupted
training gives, to the last digit; a state of other hyper-parameters is not continued."""
import pytest
import torch

from rankers import training
from rankers.train_state import STATE_FILE

HP = dict(epochs=3, n_per_query=4, patience=3, progress=False)


def _killed_in_epoch_two(monkeypatch):
    """The process dies at the end of epoch 2, before its state is written: dev evaluation raises the 2nd time."""
    real, calls = training.evaluate, []

    def dying(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(training, "evaluate", dying)
    return real


def test_a_killed_training_resumes_to_the_same_model(synthetic, tmp_path, monkeypatch):
    full = training.build_ranker("knrm", synthetic, removal_training=0.5)
    log_full = training.train(full, synthetic, **HP)

    real = _killed_in_epoch_two(monkeypatch)
    state = tmp_path / "partial"
    with pytest.raises(KeyboardInterrupt):
        training.train(training.build_ranker("knrm", synthetic, removal_training=0.5), synthetic, state_dir=state,
                       **HP)
    assert (state / STATE_FILE).exists()
    monkeypatch.setattr(training, "evaluate", real)

    before = torch.load(state / STATE_FILE, weights_only=False)["seconds"]
    again = training.build_ranker("knrm", synthetic, removal_training=0.5)  # a new process: a fresh model
    log = training.train(again, synthetic, state_dir=state, **HP)
    assert log["resumed_after_epoch"] == 1 and log["seconds"] > before > 0  # epoch 1's time is counted
    assert log["epochs"] == log_full["epochs"] and log["best_epoch"] == log_full["best_epoch"]
    full_state, again_state = full.state_dict(), again.state_dict()
    assert sorted(full_state) == sorted(again_state)
    for k, v in full_state.items():
        assert torch.equal(v, again_state[k]), k

    other = training.build_ranker("knrm", synthetic, removal_training=0.5)
    assert "resumed_after_epoch" not in training.train(other, synthetic, state_dir=state, **{**HP, "lr": 5e-4})
    training.clear_epoch_state(state)
    assert not state.exists()


def test_a_killed_cross_encoder_training_resumes_to_the_same_model(synthetic, tmp_path, monkeypatch):
    """The same on a tiny random BERT cross-encoder, whose dropout draws from torch's random state."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from rankers.crossencoder import CrossEncoder
    from rankers.transformer import default_model_path
    d = tmp_path / "tiny"
    tok = AutoTokenizer.from_pretrained(default_model_path(), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=1, hidden_dropout_prob=0.3)
    BertForSequenceClassification(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    hp = dict(epochs=2, n_per_query=2, patience=2, pseudo_queries=0, progress=False)

    def fresh():
        training.seed_everything(0)
        return CrossEncoder(model=str(d), max_length=64, removal_training=0.5)
    full = fresh()
    log_full = training.train(full, synthetic, **hp)
    real = _killed_in_epoch_two(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        training.train(fresh(), synthetic, state_dir=tmp_path / "partial", **hp)
    monkeypatch.setattr(training, "evaluate", real)
    again = fresh()
    log = training.train(again, synthetic, state_dir=tmp_path / "partial", **hp)
    assert log["resumed_after_epoch"] == 1 and log["epochs"] == log_full["epochs"]
    for k, v in full.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k


def test_the_cache_continues_a_killed_training_and_then_drops_its_state(synthetic, tmp_path, monkeypatch):
    """`get_ranker` keeps the epoch state beside the checkpoint it trains (`<leaf>.partial`): a run killed while
    training continues it the next time, and the state is gone once the model is cached."""
    monkeypatch.setenv("REXBENCH_HOME", str(tmp_path))
    real = _killed_in_epoch_two(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        training.get_ranker("knrm", synthetic, seed=5, progress=False)
    leaf = training.checkpoint_dir(synthetic.name, "knrm", 5)
    partial = leaf.with_name(leaf.name + ".partial")
    assert (partial / STATE_FILE).exists() and not (leaf / "config.json").exists()
    monkeypatch.setattr(training, "evaluate", real)
    m = training.get_ranker("knrm", synthetic, seed=5, progress=False)
    assert m.train_log["resumed_after_epoch"] == 1 and (leaf / "config.json").exists() and not partial.exists()
