"""P-BABBLE-X bench: babble from five genres' chains against clean prose, cross-genre."""

from __future__ import annotations

from bench import babble_corpora, babble_gen, corpus

Doc = dict


def sample(per_genre: int, per_category: int, seed: int = 0) -> list[Doc]:
    """Babble (`per_genre` per genre, orders 1-3 in turn, half with a real opener), clean held-out
    prose (`per_genre` per genre), poetry, dialogue and lists (`per_genre` each), and `per_category`
    docs of every clean-base category."""
    docs: list[Doc] = []
    for genre in babble_corpora.GENRES:
        docs += babble_gen.p_babble_x(genre, per_genre, seed)
        docs += babble_gen.clean_genre_docs(genre, per_genre, seed)
    docs += babble_gen.poetry_docs(per_genre, seed)
    docs += babble_gen.dialogue_docs(per_genre, seed)
    docs += babble_gen.list_docs(per_genre, seed)
    for d in corpus.clean_base(limit_per_category=per_category, seed=seed):
        docs.append({**d, "label": 0})
    return docs
