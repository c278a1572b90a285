"""The learned half of classification (directive 5.2): features, training and a compact linear model.

Pure: ``train_model`` fits a linear SVM (scikit-learn's ``LinearSVC``) on TF-IDF features of
labelled consultas; ``Model`` keeps only what prediction needs (vocabulary, IDF weights, one row of
weights per class) and predicts without scikit-learn, so a prediction costs a dictionary look-up
per feature and one small matrix product (~0.1 ms), not scikit-learn's per-call overhead.
``Model.to_bytes``/``from_bytes`` store it as a NumPy archive (no pickle: a stored model is data,
never code). The rules, the decision that combines both, and storage live elsewhere
(``routing.classify``, ``routing.corrections``).

Features: the light Spanish stems of ``routing.classify`` (accents folded, plurals dropped, six
letters kept: "presupusto" and "presupuesto" share "presup") as unigrams and bigrams, plus the
character 4-grams of each word (misspellings and word forms the stems miss); subject features
count twice, as in the rules. Choices measured by 5-fold cross-validation on the train split of
``routing/data/labelled_consultas.jsonl`` (never on its held-out third), top-1 accuracy: LinearSVC
(C=0.5) 0.921, logistic regression (C=10) 0.916, and LinearSVC fits in 0.05 s instead of ~6 s;
character 3- and 5-grams together instead of 4-grams: 0.930 and 4 instead of 6 wrong organos in
430 predictions at a 0.3 margin, for twice the features (4-grams kept for the cost per mail).
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from routing.classify import (
    _ADMINISTRATIVA_TERMS,
    _DOMAINS,
    _STOPWORDS,
    ADMINISTRATIVA,
    OrganoTopics,
    Prediction,
    normalize,
    stem,
    stems,
)

#: LinearSVC's regularisation (cross-validated on the train split).
SVM_C = 0.5
#: Length of the character n-grams taken from each word.
CHAR_N = 4
#: Words whose feature indices a model remembers (a dict, cleared when full).
WORD_CACHE_SIZE = 8192
#: A subject feature counts this many times a body feature.
SUBJECT_REPEAT = 2
#: Weight of a correction (triage, re-route, ``#derivar``) against a written example: the service
#: should follow a person's decision on the next similar consulta.
CORRECTION_WEIGHT = 3.0
#: Packaged labelled sets (``routing/data``): the one written for the model (with a ``split``
#: field; only ``train`` rows are used) and the older rules' set (all rows).
LABELLED_SET = "labelled_consultas.jsonl"
RULES_SET = "classification_set.jsonl"


@dataclass(frozen=True)
class Example:
    """A labelled consulta: ``label`` is an organo code or ``ADMINISTRATIVA``."""

    subject: str
    text: str
    label: str
    weight: float = 1.0


def features(subject: str, text: str) -> list[str]:
    """The model's features of a consulta (see the module docstring)."""
    out: list[str] = []
    for repeat, part in ((SUBJECT_REPEAT, subject), (1, text)):
        if not part:
            continue
        words = [word for word in normalize(part).split() if word not in _STOPWORDS]
        own: list[str] = []
        for word in words:
            own.extend(_word_features(word))
        stemmed = [stem(word) for word in words]
        own.extend("b:" + a + " " + b for a, b in itertools.pairwise(stemmed))
        out.extend(own * repeat)
    return out


@lru_cache(maxsize=8192)
def _word_features(word: str) -> tuple[str, ...]:
    """A word's stem and character n-grams (cached: a mail's words are mostly the language's common ones)."""
    if len(word) <= CHAR_N or word.isdigit():
        return ("w:" + stem(word),)
    padded = f"<{word}>"
    return ("w:" + stem(word), *("c:" + padded[i : i + CHAR_N] for i in range(len(padded) - CHAR_N + 1)))


class Model:
    """A trained linear model: TF-IDF (sublinear tf, l2-normalised) then one weight row per class."""

    def __init__(
        self,
        *,
        classes: Sequence[str],
        vocabulary: dict[str, int],
        idf: npt.NDArray[np.float64],
        coef: npt.NDArray[np.float32],
        intercept: npt.NDArray[np.float64],
        info: dict[str, Any] | None = None,
    ) -> None:
        self.classes = tuple(classes)
        self.vocabulary = vocabulary
        self.idf = idf
        # Transposed once: a prediction gathers rows (features), contiguous in memory.
        self.coef_t = np.ascontiguousarray(coef.T, dtype=np.float64)
        self.intercept = intercept
        self.info = info or {}
        self._indices: dict[str, tuple[int, ...]] = {}

    def scores(self, subject: str, text: str) -> npt.NDArray[np.float64]:
        """The decision score of every class (``self.classes`` order).

        Counts the features of ``features(subject, text)`` without listing them: a word's known
        features are looked up once per process (``_word_indices``), pairs of stems each time.
        """
        vocabulary = self.vocabulary
        counts: dict[int, int] = {}
        for repeat, part in ((SUBJECT_REPEAT, subject), (1, text)):
            if not part:
                continue
            words = [word for word in normalize(part).split() if word not in _STOPWORDS]
            for word in words:
                for index in self._word_indices(word):
                    counts[index] = counts.get(index, 0) + repeat
            for a, b in itertools.pairwise([stem(word) for word in words]):
                pair = vocabulary.get("b:" + a + " " + b)
                if pair is not None:
                    counts[pair] = counts.get(pair, 0) + repeat
        if not counts:
            return self.intercept.copy()
        indices = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        tf = np.fromiter((1.0 + math.log(c) for c in counts.values()), dtype=np.float64, count=len(counts))
        weights = tf * self.idf[indices]
        weights /= math.sqrt(float(weights @ weights))
        result: npt.NDArray[np.float64] = weights @ self.coef_t[indices] + self.intercept
        return result

    def _word_indices(self, word: str) -> tuple[int, ...]:
        known = self._indices.get(word)
        if known is None:
            if len(self._indices) >= WORD_CACHE_SIZE:
                self._indices.clear()
            vocabulary = self.vocabulary
            known = self._indices[word] = tuple(
                vocabulary[feature] for feature in _word_features(word) if feature in vocabulary
            )
        return known

    def predict(self, subject: str, text: str) -> Prediction:
        """The best class and its margin over the runner-up."""
        scores = self.scores(subject, text)
        order = np.argsort(-scores)
        best, second = int(order[0]), int(order[1])
        return Prediction(self.classes[best], self.classes[second], float(scores[best] - scores[second]))

    def to_bytes(self) -> bytes:
        """The model as a NumPy ``.npz`` archive (vocabulary and info as JSON inside)."""
        buffer = io.BytesIO()
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        header = {"classes": list(self.classes), "terms": terms, "info": self.info}
        np.savez_compressed(
            buffer,
            header=np.frombuffer(json.dumps(header, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
            idf=self.idf,
            coef=self.coef_t.T.astype(np.float32),
            intercept=self.intercept,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, content: bytes) -> Model:
        """Read a model written by ``to_bytes`` (refuses pickled objects)."""
        with np.load(io.BytesIO(content), allow_pickle=False) as archive:
            header = json.loads(archive["header"].tobytes().decode("utf-8"))
            return cls(
                classes=header["classes"],
                vocabulary={term: index for index, term in enumerate(header["terms"])},
                idf=archive["idf"],
                coef=archive["coef"],
                intercept=archive["intercept"],
                info=header.get("info") or {},
            )


def train_model(examples: Sequence[Example], *, info: dict[str, Any] | None = None) -> Model:
    """Fit the model on ``examples`` (at least two labels); deterministic for the same input."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    labels = sorted({example.label for example in examples})
    if len(labels) < 2:
        raise ValueError("the classifier needs examples of at least two labels")
    vectorizer = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, lowercase=False)
    matrix = vectorizer.fit_transform([features(e.subject, e.text) for e in examples])
    svm = LinearSVC(C=SVM_C, random_state=0)
    svm.fit(matrix, [e.label for e in examples], sample_weight=[e.weight for e in examples])
    coef = np.asarray(svm.coef_, dtype=np.float32)
    intercept = np.asarray(svm.intercept_, dtype=np.float64)
    classes = [str(c) for c in svm.classes_]
    if len(classes) == 2:
        # Binary LinearSVC keeps one row (for classes[1]); two opposite rows give the same margins.
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    vocabulary = {str(term): int(index) for term, index in vectorizer.vocabulary_.items()}
    idf = np.asarray(vectorizer.idf_, dtype=np.float64)
    return Model(classes=classes, vocabulary=vocabulary, idf=idf, coef=coef, intercept=intercept, info=info)


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def registry_examples(organos: Iterable[OrganoTopics]) -> list[Example]:
    """One example per registry topic and per term of the built-in vocabulary of its domain."""
    examples: list[Example] = []
    for organo in organos:
        examples.extend(Example(topic, "", organo.code) for topic in organo.topics)
        topic_keys = {" ".join(stems(topic)) for topic in organo.topics}
        for domain in _DOMAINS:
            anchors = {" ".join(stems(anchor)) for anchor in domain.anchors}
            if organo.code in domain.codes or anchors & topic_keys:
                examples.extend(Example("", term, organo.code) for term in domain.terms)
    examples.extend(Example("", term, ADMINISTRATIVA) for term in _ADMINISTRATIVA_TERMS)
    return examples


def packaged_rows(name: str) -> list[dict[str, Any]]:
    """The rows of a packaged labelled set (``routing/data/NAME``)."""
    text = resources.files("routing").joinpath("data", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def labelled_examples(*, split: str = "train") -> list[Example]:
    """The packaged labelled examples the model trains on: the ``split`` rows and the rules' set."""
    rows = [row for row in packaged_rows(LABELLED_SET) if row.get("split") == split]
    rows += packaged_rows(RULES_SET)
    return [Example(row["subject"], row["text"], row["expected_organo"] or ADMINISTRATIVA) for row in rows]


def builtin_examples(organos: Iterable[OrganoTopics]) -> list[Example]:
    """Everything the service knows without corrections: registry topics and the labelled sets."""
    return [*registry_examples(organos), *labelled_examples()]
