"""The sentiment product's config, demo feed and evaluation: pure functions, no Dagster."""

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest

from batch_ml.config import ConfigError, IngestLimits
from batch_ml.harness.project import SHARED_DATA, require_shared
from batch_ml.platform.sources.contract import ContractViolation, read_landing_file
from batch_ml.platform.sources.landing import discover
from batch_ml.products.sentiment.config import parse_section
from batch_ml.products.sentiment.demo import simulate, write_landing
from batch_ml.products.sentiment.evaluation import (
    LabelError,
    accuracy_rows,
    check_labels,
    count_column,
    scores_from_counts,
)
from batch_ml.products.sentiment.sources import ARRIVAL, LABELLED, LABELS, REVIEWS, sources

pytestmark = pytest.mark.unit

CLASSES = ("negative", "neutral", "positive")
CLOTHING = SHARED_DATA / "clothing_reviews" / "clothing_reviews.csv"


def _config(**demo):
    return parse_section({"demo": {"days": 30, "reviews_per_day": 20, **demo}}, Path("."))


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"classes": ["good"]}, "two or more distinct labels"),
        ({"classes": ["a", "a"]}, "two or more distinct labels"),
        ({"families": ["forest"]}, "families must be some of"),
        ({"validation_days": 90}, "validation_days must be less than training_days"),
        ({"label_lag_days": 0}, "label_lag_days must be >= 1"),
        ({"trend": {"alpha": 2}}, "sentiment.trend: alpha must be in (0, 1)"),
        ({"promotion": {"margin": 1.5}}, "margin must be in [0, 1)"),
        ({"typo": 1}, "unknown key(s) ['sentiment.typo']"),
        ({"demo": {"replay_reviews": 3}}, "expected a path"),
    ],
)
def test_a_wrong_sentiment_setting_is_refused_with_its_key(section, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_section(section, Path("."))


def test_a_replay_path_is_relative_to_the_config_folder(tmp_path):
    cfg = parse_section({"demo": {"replay_reviews": "reviews.csv"}}, tmp_path)
    assert cfg.demo.replay_reviews == (tmp_path / "reviews.csv").resolve()


def test_the_generated_feed_is_seeded_and_keeps_labels_after_their_reviews():
    cfg = _config()
    a, b = simulate(cfg.demo, cfg.sentiment), simulate(cfg.demo, cfg.sentiment)
    assert a[REVIEWS].equals(b[REVIEWS]) and a[LABELS].equals(b[LABELS])
    reviews, labels = a[REVIEWS], a[LABELS]
    assert reviews.height == 30 * 20 and reviews["review_id"].is_unique().all()
    joined = labels.join(reviews.select("review_id", ARRIVAL), on="review_id", suffix="_r")
    assert joined.height == labels.height  # every label names a delivered review
    lag = (joined[LABELLED] - joined[ARRIVAL]).dt.total_days()
    assert lag.min() >= 1 and lag.max() <= cfg.sentiment.label_lag_days
    assert (joined[ARRIVAL] == joined[f"{ARRIVAL}_r"]).all()
    assert set(labels["label"]) == set(CLASSES)
    age = (reviews[ARRIVAL] - reviews["created_at"].dt.date()).dt.total_days()
    assert age.min() >= 0 and age.max() <= cfg.sentiment.max_review_age_days


def test_every_demo_file_meets_the_contract_in_each_of_its_formats(tmp_path):
    cfg = _config()
    write_landing(cfg.demo, cfg.sentiment, tmp_path)
    declared = sources(cfg.sentiment, IngestLimits())
    frames = simulate(cfg.demo, cfg.sentiment)
    for name, source in declared.items():
        files, problems = discover(tmp_path, source)
        assert not problems
        assert {f.path.suffix for f in files} == {".csv", ".jsonl", ".xml"}
        stored = pl.concat(
            [
                read_landing_file(f.path, source, f.partition).with_columns(
                    pl.lit(f.partition).alias(source.day_column)
                )
                for f in files
            ],
            how="diagonal_relaxed",
        )
        written = [c for c in stored.columns if c in frames[name].columns]
        # The same rows and values whatever the day's format; no rating is delivered.
        assert (
            stored.select(written)
            .sort("review_id")
            .equals(frames[name].select(written).sort("review_id"))
        )
        assert set(stored.columns) - set(written) <= {"rating"}


def test_the_replay_uses_real_review_text_and_maps_stars_to_classes():
    cfg = _config(replay_reviews=str(require_shared(CLOTHING)))
    frames = simulate(cfg.demo, cfg.sentiment)
    real = pl.read_csv(CLOTHING, columns=["Review Text"])["Review Text"].drop_nulls()
    assert (
        frames[REVIEWS]["text"].head(50).is_in(real.str.replace_all("\r\n?", "\n").implode()).all()
    )
    assert set(frames[LABELS]["label"]) == set(CLASSES)


def test_scores_from_confusion_counts_match_a_hand_computed_example():
    # true negative: 3 as negative, 1 as positive; neutral: 1 as negative, 1 as neutral;
    # positive: 4 as positive.
    counts = {count_column(t, p): 0 for t in CLASSES for p in CLASSES}
    counts |= {
        count_column("negative", "negative"): 3,
        count_column("negative", "positive"): 1,
        count_column("neutral", "negative"): 1,
        count_column("neutral", "neutral"): 1,
        count_column("positive", "positive"): 4,
    }
    scores = scores_from_counts(counts, CLASSES)
    # precision: neg 3/4, neu 1/1, pos 4/5; recall: neg 3/4, neu 1/2, pos 4/4
    f1 = [0.75, 2 * 1 * 0.5 / 1.5, 2 * 0.8 * 1.0 / 1.8]
    assert scores["accuracy"] == pytest.approx(8 / 10)
    assert scores["precision_positive"] == pytest.approx(0.8)
    assert scores["recall_neutral"] == pytest.approx(0.5)
    assert scores["macro_f1"] == pytest.approx(sum(f1) / 3)


def test_a_class_never_predicted_scores_zero_not_nan():
    rows = accuracy_rows(
        dt.date(2025, 3, 1),
        pl.Series(["negative", "neutral"]),
        {"served": pl.Series(["negative", "negative"])},
        CLASSES,
    )
    row = rows.row(0, named=True)
    assert row["precision_neutral"] == 0.0 and row["f1_positive"] == 0.0
    assert row[count_column("neutral", "negative")] == 1 and row["reviews"] == 2


def test_a_label_outside_the_classes_names_the_review_and_day():
    labels = pl.DataFrame(
        {"review_id": ["R1"], "label": ["mixed"], LABELLED: [dt.date(2025, 3, 1)]}
    )
    with pytest.raises(LabelError, match=r"review 'R1' labelled 'mixed' on 2025-03-01"):
        check_labels(labels, CLASSES)


DAY = dt.date(2025, 3, 10)
GOOD = {
    "review_id": "R1",
    "product_id": "P1",
    "created_at": "2025-03-10T08:00:00Z",
    "title": "Nice",
    "text": "Lovely & soft <3",
}


def _reviews_file(folder: Path, kind: str, body: bytes) -> Path:
    path = folder / REVIEWS / f"{REVIEWS}_{DAY.isoformat()}.{kind}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def _read(path: Path):
    return read_landing_file(path, sources(_config().sentiment, IngestLimits())[REVIEWS], DAY)


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        (
            "csv",
            "review_id,product_id,created_at,text\nR1,P1,2025-03-10T08:00:00Z,caf\xe9\n".encode(
                "latin-1"
            ),
            "not valid UTF-8",
        ),
        (
            "xml",
            b"<reviews><review><review_id>R1</review_id><text>a</review></reviews>",
            "cannot be parsed as xml: line 1",
        ),
        (
            "jsonl",
            b'{"review_id": "R1", "product_id": "P1", "created_at": "2025-03-10T08:00:00Z"}\n',
            "text",
        ),
        (
            "csv",
            b"review_id,product_id,created_at,text\n"
            b"R1,P1,2025-03-10T08:00:00Z,good\nR1,P1,2025-03-10T09:00:00Z,bad\n",
            "review_id",
        ),
        (
            "csv",
            b"review_id,product_id,created_at,text\nR1,P1,2025-03-10,good\n",
            "created_at",
        ),
        (
            "csv",
            b"review_id,product_id,created_at,text\nR1,P1,2025-04-10T08:00:00Z,good\n",
            "created_at",
        ),
    ],
    ids=[
        "wrong-encoding",
        "xml-not-well-formed",
        "missing-text",
        "duplicate-id",
        "no-time",
        "written-after-arrival",
    ],
)
def test_a_bad_reviews_file_is_refused_naming_file_row_and_column(tmp_path, kind, body, message):
    path = _reviews_file(tmp_path, kind, body)
    with pytest.raises(ContractViolation) as failure:
        _read(path)
    text = str(failure.value)
    assert str(path) in text and message in text


def test_the_same_review_reads_alike_from_csv_jsonl_and_xml(tmp_path):
    csv = "review_id,product_id,created_at,title,text\n" + ",".join(f'"{v}"' for v in GOOD.values())
    jsonl = pl.DataFrame([GOOD]).write_ndjson()
    xml = (
        "<reviews><review>"
        + "".join(
            f"<{k}>{v.replace('&', '&amp;').replace('<', '&lt;')}</{k}>" for k, v in GOOD.items()
        )
        + "</review></reviews>"
    )
    frames = []
    for kind, body in (("csv", csv), ("jsonl", jsonl), ("xml", xml)):
        folder = tmp_path / kind
        frames.append(_read(_reviews_file(folder, kind, body.encode())))
    assert frames[0].equals(frames[1]) and frames[1].equals(frames[2])
    assert frames[0]["created_at"][0] == dt.datetime(2025, 3, 10, 8, tzinfo=dt.UTC)


def test_the_baselines_label_from_the_state_fitted_for_their_week():
    from batch_ml.products.sentiment.evaluation import baseline_labels

    features = pl.DataFrame({"vader_compound": [-0.8, 0.0, 0.9]})
    week = {"majority_class": "positive", "lexicon_low": -0.3, "lexicon_high": 0.4}
    lexicon = baseline_labels("lexicon", features, week, CLASSES)
    assert lexicon.to_list() == ["negative", "neutral", "positive"]
    assert baseline_labels("majority", features, week, CLASSES).to_list() == ["positive"] * 3
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_labels("coin", features, week, CLASSES)


def test_a_demo_day_without_reviews_is_a_header_only_csv_that_loads_empty(tmp_path):
    cfg = _config(days=40, reviews_per_day=1)  # arrivals are random: some days get none
    write_landing(cfg.demo, cfg.sentiment, tmp_path)
    source = sources(cfg.sentiment, IngestLimits())[REVIEWS]
    files, _ = discover(tmp_path, source)
    assert len(files) == 40
    loaded = {f.path: read_landing_file(f.path, source, f.partition) for f in files}
    empty = [path for path, frame in loaded.items() if frame.is_empty()]
    assert empty and all(path.suffix == ".csv" for path in empty)
