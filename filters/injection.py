"""injection detector: instructions addressed to a model that reads the page, in any wording.

The trigger lists (configs/triggers.yaml) only match the phrasings someone wrote down. This detector
scores every sentence window of a document (one or two sentences, 80-320 characters) with a small
linear classifier over hashed character n-grams
(2-5 characters of the case-folded NFKC text, fastText-style averaging), so it needs no tokenizer
and works the same for Latin, Cyrillic, CJK and kana. The weights ship with the package
(``filters/injection_model.npz``, 2 MB, float16); ``bench/train_injection.py`` fits them and writes
down which collections it used (see bench/RESULTS.md, "P-INJ-X").

Context (issue: phrase hits without context gave false positives). A document is in *context* when
its subject is security (several security words in any of ten languages, e.g. an article about
prompt injection that quotes one) or when it reads as a support or forum thread ("X wrote:",
"Re:", "Reply", "[Solved]" ...). In context, a higher threshold applies, and a phrase of the trigger
lists alone never quarantines: ``triggers.flag`` reads ``injection_context`` and drops its
``triggers:prompt_injection`` reason there. Outside context an addressed phrase still quarantines,
as before, so the lists and the classifier each catch what the other misses.

Signals: ``injection_score`` (probability of the most suspicious window), ``injection_start`` /
``injection_end`` (that window, in characters of ``text``), ``injection_context`` ("", "security"
or "thread"). Reasons: ``injection:classifier``, ``injection:classifier_in_<context>``,
(``triggers:prompt_injection`` stays the triggers detector's).
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import unicodedata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
from pydantic import Field

from poisonguard.filters.contract import DetectorConfig, Signal, Spec

MODEL_FILE = "injection_model.npz"


class Config(DetectorConfig):
    model_file: str | None = Field(None, description="null: the shipped filters/injection_model.npz")
    threshold: float = Field(0.9911, ge=0.0, le=1.0, description="window probability that quarantines")
    threshold_in_context: float = Field(
        0.998, ge=0.0, le=1.0, description="the same on security pages and support/forum threads"
    )
    security_terms_min: int = Field(
        2, ge=1, description="security-word hits that make a page's subject security"
    )
    thread_markers_min: int = Field(2, ge=1, description="forum/support markers that make a page a thread")
    max_chars: int = Field(200_000, ge=1, description="characters scored per document (head and tail)")


class Model(NamedTuple):
    weights: np.ndarray  # float32, 2**bits: n-gram weights
    bias: float
    bits: int
    ngrams: tuple[int, ...]
    window: int  # most characters in one sentence window (longer sentences are cut)
    min_chars: int  # shorter sentences are merged with the next one
    combiner: np.ndarray  # weights over window_features(): n-gram logit, concepts, concept pairs
    combiner_bias: float


class ModelError(ValueError):
    """A model file that cannot be used; the message names the file."""


@functools.cache
def load_model(path: str | None = None) -> Model:
    """The classifier (None: the shipped one). Cached per process."""
    where = f"{MODEL_FILE} (shipped)" if path is None else path
    try:
        if path is None:
            ref = importlib.resources.files("poisonguard.filters").joinpath(MODEL_FILE)
            with ref.open("rb") as f:
                data = dict(np.load(f))
        else:
            with Path(path).open("rb") as f:
                data = dict(np.load(f))
        model = Model(
            data["weights"].astype(np.float32),
            float(data["bias"]),
            int(data["bits"]),
            tuple(int(n) for n in data["ngrams"]),
            int(data["window"]),
            int(data["min_chars"]),
            data["combiner"].astype(np.float64),
            float(data["combiner_bias"]),
        )
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{where}: not a usable injection model: {exc}") from exc
    if model.weights.shape != (1 << model.bits,):
        raise ModelError(f"{where}: weights have shape {model.weights.shape}, expected 2**{model.bits}")
    if model.combiner.shape != (N_FEATURES,):
        raise ModelError(f"{where}: combiner has shape {model.combiner.shape}, expected ({N_FEATURES},)")
    return model


# --- features ------------------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")
_MIX = np.uint64(0x9E3779B97F4A7C15)
_PRIME = np.uint64(1_000_003)


def fold(text: str) -> str:
    """NFKC, case-folded, whitespace runs as one space: what the n-grams are taken from."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold())


def ngram_ids(folded: str, model_bits: int, ngrams: tuple[int, ...]) -> list[np.ndarray]:
    """Per n in ``ngrams``: the hashed bucket of the n-gram starting at each position."""
    cp = np.frombuffer(folded.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    out = []
    shift = np.uint64(64 - model_bits)
    with np.errstate(over="ignore"):
        for n in ngrams:
            if len(cp) < n:
                out.append(np.zeros(0, dtype=np.int64))
                continue
            h = np.full(len(cp) - n + 1, np.uint64(n), dtype=np.uint64)
            for k in range(n):
                h = h * _PRIME + cp[k : len(cp) - n + 1 + k]
            out.append(((h * _MIX) >> shift).astype(np.int64))
    return out


QUOTED_MENTION = 0.5  # share of a window inside quotation marks that makes it a mention
_QUOTED = re.compile(
    r"“[^”\n]{12,800}”|«[^»\n]{12,800}»|„[^“”\n]{12,800}[“”]|\"[^\"\n]{12,800}\"|「[^」\n]{12,800}」"
)
_BOUNDARY = re.compile(r"[.!?。！？；;]+[\s\"'”»」)]*|\n+")


def segments(folded: str, min_chars: int, max_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of sentence windows: sentences merged up to ``min_chars``, cut at ``max_chars``.
    Injections are one to three sentences; a window of that size keeps them from being averaged away
    in a long page."""
    starts: list[int] = []
    ends: list[int] = []
    cur = 0
    # A quotation starts and ends a window of its own, so a quoted attack is seen as quoted.
    hard = {p for m in _QUOTED.finditer(folded) for p in (m.start(), m.end())} | {len(folded)}
    cuts = sorted({m.end() for m in _BOUNDARY.finditer(folded)} | hard)
    for cut in cuts:
        if cut - cur < min_chars and cut not in hard:
            continue
        while cut - cur > max_chars:
            starts.append(cur)
            ends.append(cur + max_chars)
            cur += max_chars
        if cut > cur:
            starts.append(cur)
            ends.append(cut)
            cur = cut
    if not starts:
        starts, ends = [0], [len(folded)]
    return np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)


def windows(folded: str, model: Model) -> tuple[np.ndarray, np.ndarray]:
    """Every sentence window and every pair of neighbouring ones (an injection across a boundary)."""
    starts, ends = segments(folded, model.min_chars, model.window)
    if len(starts) > 1:
        starts, ends = np.concatenate([starts, starts[:-1]]), np.concatenate([ends, ends[1:]])
    return starts, ends


def window_logits(folded: str, model: Model, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mean n-gram weight of each window [start, end) of the folded text."""
    ids = ngram_ids(folded, model.bits, model.ngrams)
    total = np.zeros(len(starts))
    count = np.zeros(len(starts))
    for n, idx in zip(model.ngrams, ids, strict=True):
        if len(idx) == 0:
            continue
        csum = np.concatenate([[0.0], np.cumsum(model.weights[idx], dtype=np.float64)])
        lo = np.minimum(starts, len(idx))
        hi = np.maximum(np.minimum(ends - n + 1, len(idx)), lo)
        total += csum[hi] - csum[lo]
        count += hi - lo
    return model.bias + total / np.maximum(count, 1.0)


def features(text: str, model_bits: int, ngrams: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(bucket ids, values) of one window's averaged one-hot n-grams: the training-side view of
    exactly what :func:`window_logits` computes for a window."""
    ids = ngram_ids(fold(text), model_bits, ngrams)
    allids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    if len(allids) == 0:
        return allids, np.zeros(0)
    uniq, counts = np.unique(allids, return_counts=True)
    return uniq, counts / len(allids)


# --- concepts -------------------------------------------------------------------------------------

# What an injection is made of, in ten languages (en de fr es it pt nl ru zh ja), one regex per
# concept over the folded text. The classifier does not read these as phrases to match: it gets,
# per window, how many concepts occur and which pairs occur together, and learns their weights from
# data, beside the n-gram score. Wording the lists miss still lands in some concept.
CONCEPTS: dict[str, str] = {
    # the reader addressed as a machine
    "addressee": (
        r"\b(?:ai|a\.i\.|llms?|gpt\w*|chatgpt|chatbot|bot|agents?|assistant|summari[sz]er|language model|"
        r"ai model|ki|ki-\w+|sprachmodell|assistent\w*|agent\w*|ia|assistant ia|modèle de langage|"
        r"asistente|modelo de lenguaje|assistente|modello linguistico|modelo de linguagem|taalmodel|"
        r"ai-\w+|ии|ии-\w+|ассистент\w*|агент\w*|бот\w*|языков\w+ модел\w+|нейросет\w*)\b|"
        r"助手|智能体|机器人|语言模型|ai模型|アシスタント|エージェント|ボット|言語モデル|aiモデル"
    ),
    # cancelling the reader's instructions
    "override": (
        r"\b(?:ignore|disregard|forget|override|bypass|overrule|ignorier\w*|vergiss|vergesst|missachte\w*|"
        r"ignor\w*|oublie\w*|olvid\w*|dimentic\w*|esque[cç]\w*|desconsider\w*|negeer|vergeet|"
        r"игнорир\w*|забудь\w*|не обращай)\b(?:\W+\w+){0,5}?\W+(?:\w*\W+)?"
        r"(?:instructions?|rules|prompt|guidelines|task|directions|above|previous|prior|earlier|"
        r"restrictions|safety|anweisung\w*|regeln|vorgaben|aufgabe|consignes|règles|précédent\w*|"
        r"instrucciones|reglas|anterior\w*|istruzioni|regole|precedent\w*|instruç\w+|regras|"
        r"instructies|regels|eerdere|инструкци\w*|правил\w*|предыдущ\w*)|"
        r"(?:忽略|无视|忘记|忘掉|不要理会).{0,12}(?:指令|指示|规则|提示|要求|任务)|"
        r"(?:指示|ルール|命令|プロンプト|タスク).{0,10}(?:無視|忘れ|取り消|無効)|"
        r"\b(?:no longer appl\w+|are cancell?ed|is cancell?ed|gelten nicht mehr|aufgehoben|"
        r"ne s'appliquent plus|est annulée|ya no valen|queda cancelada|non valgono più|è annullat\w|"
        r"não valem mais|foi cancelad\w|gelden niet meer|is geannuleerd|больше не действуют|отменен\w*)\b|"
        r"已被取消|已经失效|取り消されました|もう無効"
    ),
    # a persona without rules, role-play framing
    "roleplay": (
        r"\b(?:you are now|from now on|act as|pretend|stay in character|in character|role-?play|jailbr\w+|"
        r"dan|do anything now|developer mode|unfiltered|uncensored|no (?:restrictions|rules|filters|limits)|"
        r"without (?:any )?(?:restrictions|rules|filters|limits|ethics)|du bist jetzt|ab jetzt|tu so|rolle|"
        r"ohne (?:regeln|einschränkungen|filter)|ungefiltert\w*|tu es maintenant|désormais|à partir de "
        r"maintenant|"
        r"fais comme si|sans (?:aucune )?(?:règles?|restrictions?|filtres?)|personnage|ahora eres|"
        r"a partir de ahora|finge|sin (?:reglas|restricciones|filtros)|personaje|ora sei|da ora in poi|fingi|"
        r"senza (?:regole|restrizioni|filtri)|personaggio|a partir de agora|finja|sem (?:regras|restriç"
        r"ões|filtros)|"
        r"personagem|je bent nu|vanaf nu|doe alsof|zonder (?:regels|beperkingen|filters)|теперь ты|"
        r"с этого момента|притворись|без (?:правил|ограничений|фильтров)|из роли)\b|"
        r"从现在起|你现在是|假装|没有任何规则|无过滤|保持角色|今からあなたは|ふりをして|ルールのない|検閲のない|役を"
    ),
    # secrets and data a reader can leak
    "secret": (
        r"\b(?:system ?prompt|initial instructions|hidden (?:prompt|instructions)|api[ -]?keys?|passwords?|"
        r"credentials|session (?:token|cookie)|cookies?|conversation|chat history|contacts|customer (?:"
        r"data|list)|"
        r"systemprompt|passw[oö]rt\w*|zugangsdaten|api-schlüssel|gespräch\w*|prompt système|mots? de passe|"
        r"clés? api|conversation|contraseñas?|claves? api|conversación|prompt de sistema|chiavi api|"
        r"conversazione|senhas?|chaves? de api|conversa|wachtwoord\w*|api-sleutel\w*|gesprek|systeemprompt|"
        r"системн\w* промпт\w*|парол\w*|api-ключ\w*|разговор\w*|переписк\w*)\b|"
        r"系统提示|密码|api密钥|对话|联系人|システムプロンプト|パスワード|apiキー|会話|連絡先"
    ),
    # what the reader is told to do
    "action": (
        r"\b(?:send|forward|post|upload|exfiltrat\w+|leak|reveal|print|output|repeat|append|include|call|"
        r"invoke|execute|run|delete|transfer|reply|respond|answer only|say|tell the user|"
        r"schick\w*|sende\w*|antworte\w*|gib|rufe|führe|lösche\w*|hänge|sag|envoie\w*|affiche\w*|appelle\w*|"
        r"exécute\w*|supprime\w*|ajoute\w*|réponds|dis|envía\w*|muestra\w*|llama\w*|ejecuta\w*|borra\w*|"
        r"añade\w*|responde\w*|dile|invia\w*|stampa\w*|chiama\w*|esegui\w*|elimina\w*|aggiungi\w*|rispondi|"
        r"di'|envie\w*|mostre\w*|chame\w*|execute\w*|apague\w*|acrescente\w*|inclua\w*|responda|diga|stuur|"
        r"geef|roep|voer|verwijder\w*|voeg|antwoord|vertel|отправь\w*|выведи\w*|вызови\w*|запусти\w*|"
        r"удали\w*|добавь\w*|перешли\w*|ответь\w*|скажи\w*)\b|"
        r"发送|输出|调用|执行|删除|附上|打开|回复|告诉用户|送信|出力|呼び出|実行|削除|付け加え|開い|返答|伝えて"
    ),
    "url": r"https?://|\b[\w.+-]+@[\w-]+\.[\w.]+|\.gif\?|webhook|\?\w+=",
    "tool": (
        r"\b(?:tools?|functions?|shell|browser|send_email|http_post|delete_file|fetch_url|"
        r"werkzeug\w*|tool|outil\w*|herramienta\w*|strumento|ferramenta|browsertool|shelltool|"
        r"инструмент\w*)\b|工具|ツール|\b\w+_\w+\s*\("
    ),
    # obligation addressed to "you", a new goal
    "you_must": (
        r"\b(?:you must|you will|you have to|you should now|your (?:new |real )?(?:task|goal|objective|"
        r"instructions)|"
        r"du musst|dein (?:neues )?ziel|deine (?:neue )?aufgabe|tu dois|ton (?:nouvel )?objectif|ta (?:"
        r"nouvelle )?tâche|"
        r"debes|tu (?:nuevo )?objetivo|tu (?:nueva )?tarea|devi|il tuo (?:nuovo )?(?:obiettivo|compito)"
        r"|você deve|"
        r"seu (?:novo )?objetivo|sua (?:nova )?tarefa|je moet|je (?:nieuwe )?(?:doel|taak)|ты должен|"
        r"твоя (?:новая )?(?:цель|задача))\b|"
        r"你必须|你的新目标|你的任务|あなたの新しい目的|しなければなりません"
    ),
    "marker": (
        r"(?:^|\n)\s*(?:system|note|important|attention|admin|assistant)\s*(?:note|message|notice|overr"
        r"ide)?\s*[:!]|"
        r"\[(?:system|inst|admin|hidden instruction)\]|<\|im_start\|>|###\s*(?:instruction|system)|"
        r"systemhinweis|systemmeldung|note système|avis système|nota del sistema|aviso del sistema|"
        r"nota di sistema|avviso di sistema|aviso do sistema|systeemmelding|системное сообщение|"
        r"系统通知|システム通知|<!--"
    ),
}


_CONCEPT_RES = tuple(re.compile(p) for p in CONCEPTS.values())
_PAIRS = tuple((i, j) for i in range(len(CONCEPTS)) for j in range(i + 1, len(CONCEPTS)))
N_FEATURES = 1 + 1 + len(_PAIRS) + 1


def concept_positions(folded: str) -> list[np.ndarray]:
    """Start positions of every match of each concept in the folded text."""
    return [np.fromiter((m.start() for m in r.finditer(folded)), dtype=np.int64) for r in _CONCEPT_RES]


def quoted_share(folded: str, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Share of each window's characters that sit inside a quotation (an article quoting an attack)."""
    inside = np.zeros(len(folded) + 1)
    for m in _QUOTED.finditer(folded):
        inside[m.start()] += 1
        inside[m.end()] -= 1
    csum = np.concatenate([[0.0], np.cumsum(np.cumsum(inside)[:-1] > 0)])
    return (csum[ends] - csum[starts]) / np.maximum(ends - starts, 1)


def span_features(folded: str, model: Model, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Feature matrix of the windows [start, end): the n-gram logit, how many concepts are present
    beyond the first, each pair of concepts present together, and the share inside a quotation.
    One concept alone counts for nothing: "agent", "bot" or "password" fill ordinary manuals."""
    logits = window_logits(folded, model, starts, ends)
    present = np.zeros((len(starts), len(CONCEPTS)))
    for k, pos in enumerate(concept_positions(folded)):
        if len(pos):
            present[:, k] = np.searchsorted(pos, ends) > np.searchsorted(pos, starts)
    pairs = np.stack([present[:, i] * present[:, j] for i, j in _PAIRS], axis=1)
    extra = np.maximum(present.sum(axis=1) - 1, 0)[:, None]
    quoted = quoted_share(folded, starts, ends)[:, None]
    return np.concatenate([logits[:, None], extra, pairs, quoted], axis=1)


def window_features(folded: str, model: Model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, feature matrix) of every window of the folded text."""
    starts, ends = windows(folded, model)
    return starts, ends, span_features(folded, model, starts, ends)


# --- context -------------------------------------------------------------------------------------

# Words that make a page's subject security (en de fr es it pt nl ru zh ja). Counted as occurrences.
_SECURITY = re.compile(
    r"prompt[ -]?injection|injection de prompt|inyecci[oó]n de prompts?|injeç[aã]o de prompt|"
    r"promptinjectie|инъекци\w* промпт\w*|提示注入|プロンプトインジェクション|jailbreak\w*|"
    r"注入|インジェクション|инъекци\w*|\b(?:injections?|injektion\w*|inyecci\w+|iniezion\w+|injeç\w+|injectie\w*)\b|"
    r"\b(?:security|vulnerab\w+|attack(?:er|s)?|exploit\w*|malware|phishing|cve-\d{4}-\d+|"
    r"sicherheit\w*|angriff\w*|angreifer\w*|schwachstelle\w*|sécurité|attaque\w*|vulnérabilit\w+|"
    r"seguridad|ataque\w*|vulnerabilidad\w*|sicurezza|attacc\w+|vulnerabilit\w+|segurança|"
    r"beveiliging\w*|aanval\w*|kwetsba\w+|безопасност\w*|атак\w*|уязвим\w*|злоумышленни\w*)\b|"
    r"安全|攻击|漏洞|セキュリティ|攻撃|脆弱性"
)
# Marks of a support or forum thread. Each pattern counts once however often it occurs.
_THREAD = tuple(
    re.compile(p, re.MULTILINE | re.IGNORECASE)
    for p in (
        r"^\s*(?:re|aw|sv|回复)\s?:",
        r"\b(?:wrote|schrieb|a écrit|escribió|ha scritto|escreveu|schreef|писал\w*|написал\w*)\s*(?:\("
        r"\w+\))?\s*:",
        r"写道[:：]|さんの投稿|さんが書きました",
        r"^\s*(?:reply|quote|antworten|zitieren|répondre|citer|responder|citar|rispondi|cita|reageren|"
        r"citeren|ответить|цитировать|回复|引用|返信)\s*$",
        r"\[(?:solved|gelöst|résolu|resuelto|risolto|resolvido|opgelost|решено|已解决|解決済み)\]",
        r"^\s*(?:posted by|gepostet von|publié par|publicado por|pubblicato da|geplaatst door)\b",
        r"^\s*#\d+\s|^\s*(?:post|beitrag|message|mensaje|messaggio|mensagem|bericht)\s*#?\d+",
    )
)


def context(text: str, cfg: Config) -> str:
    """ "security", "thread" or "" (see the module docstring)."""
    if sum(1 for p in _THREAD if p.search(text)) >= cfg.thread_markers_min:
        return "thread"
    hits = 0
    for _ in _SECURITY.finditer(text.casefold()):
        hits += 1
        if hits >= cfg.security_terms_min:
            return "security"
    return ""


# --- detector contract ---------------------------------------------------------------------------


def _clip(text: str, limit: int) -> tuple[str, int]:
    """Head and tail of a long text (injections sit anywhere, often at the end); offset of the tail."""
    if len(text) <= limit:
        return text, 0
    half = limit // 2
    return text[:half] + " " + text[-half:], len(text) - half - 1


def score_text(text: str, model: Model) -> tuple[float, int, int]:
    """(probability, start, end) of the most suspicious window; positions are approximate (folding
    can change lengths) and point into ``text``."""
    folded = fold(text)
    if not folded.strip():
        return 0.0, 0, 0
    starts, ends, feats = window_features(folded, model)
    logits = model.combiner_bias + feats @ model.combiner
    # A window that is almost all quotation is a mention (an article quoting an attack), as for the
    # trigger lists' "addressed" rule; an attacker who quotes their injection is caught by neither.
    logits = np.where(feats[:, -1] >= QUOTED_MENTION, -np.inf, logits)
    best = int(np.argmax(logits))
    prob = float(1.0 / (1.0 + np.exp(-logits[best])))
    return prob, int(starts[best]), min(len(text), int(ends[best]))


def score(batch: pa.Table, cfg: Config) -> dict[str, pa.Array]:
    model = load_model(cfg.model_file)
    scores: list[float] = []
    starts: list[int] = []
    ends: list[int] = []
    contexts: list[str] = []
    for text in batch.column("text").to_pylist():
        text = text or ""
        clipped, tail = _clip(text, cfg.max_chars)
        prob, start, end = score_text(clipped, model)
        if tail and start > cfg.max_chars // 2:
            start, end = start + tail - cfg.max_chars // 2, end + tail - cfg.max_chars // 2
        scores.append(round(prob, 6))
        starts.append(start)
        ends.append(end)
        contexts.append(context(text, cfg))
    return {
        "injection_score": pa.array(scores, pa.float32()),
        "injection_start": pa.array(starts, pa.int32()),
        "injection_end": pa.array(ends, pa.int32()),
        "injection_context": pa.array(contexts, pa.string()),
    }


def _column(signals: pa.Table, name: str, default: Any) -> list[Any]:
    if name in signals.column_names:
        return [default if v is None else v for v in signals.column(name).to_pylist()]
    return [default] * signals.num_rows


def flag(signals: pa.Table, cfg: Config) -> list[list[str]]:
    scores = _column(signals, "injection_score", 0.0)
    contexts = _column(signals, "injection_context", "")
    discussion = _column(signals, "triggers_discussion", False)  # the lists' own discussion markers
    reasons: list[list[str]] = []
    for prob, ctx, talk in zip(scores, contexts, discussion, strict=True):
        ctx = ctx or ("security" if talk else "")
        out: list[str] = []
        if ctx:
            if prob >= cfg.threshold_in_context:
                out.append(f"injection:classifier_in_{ctx}")
        elif prob >= cfg.threshold:
            out.append("injection:classifier")
        reasons.append(out)
    return reasons


DECLARED_SIGNALS = (
    Signal("injection_score", "threshold"),
    Signal("injection_start"),
    Signal("injection_end"),
    Signal("injection_context"),
)
DETECTOR = Spec(
    name="injection", stage="cheap", config=Config, signals=DECLARED_SIGNALS, score=score, flag=flag
)
