"""Consistency check for evals/english (run: python3 evals/english/check.py)."""
import json, re, sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEYS = {"id", "question", "lang", "evidence", "answer_must", "answerable"}

docs = {}
for p in sorted((HERE / "corpus").glob("*.txt")):
    text = p.read_text(encoding="utf-8")
    parts = text.strip("\n").split("\n\n")
    title, paras = parts[0], parts[1:]
    assert "\n" not in title and 3 <= len(paras) <= 5, p.name
    assert all(para.strip() and "\n" not in para for para in paras), p.name
    words = len(text.split())
    assert 300 <= words <= 500, (p.name, words)
    docs[p.name] = (text, paras)
print(f"articles: {len(docs)}, chars: {sum(len(t) for t, _ in docs.values())}")

def sentences(para):
    return re.split(r'(?<=[.!?])\s+(?=[A-Z"\u201c])', para)

qs = [json.loads(l) for l in (HERE / "questions.jsonl").read_text(encoding="utf-8").splitlines() if l.strip()]
ids = [q["id"] for q in qs]
assert len(ids) == len(set(ids)), "duplicate ids"
per_doc, by_lang, n_ans = Counter(), Counter(), 0
for q in qs:
    assert set(q) == KEYS, (q["id"], set(q) ^ KEYS)
    assert q["lang"] in {"en", "zh-Hans", "zh-Hant"}, q["id"]
    by_lang[q["lang"]] += 1
    if not q["answerable"]:
        assert q["answerable"] is False and q["evidence"] == [] and q["answer_must"] == [], q["id"]
        continue
    n_ans += 1
    assert q["answerable"] is True and len(q["evidence"]) == 1, q["id"]
    ev = q["evidence"][0]
    assert 15 <= len(ev) <= 40, (q["id"], len(ev))
    hits = [(name, text.count(ev)) for name, (text, _) in docs.items() if ev in text]
    assert len(hits) == 1 and hits[0][1] == 1, (q["id"], ev, hits)
    name = hits[0][0]
    per_doc[name] += 1
    para = next(p for p in docs[name][1] if ev in p)
    sent = [s for s in sentences(para) if ev in s]
    assert len(sent) == 1, (q["id"], "evidence crosses a sentence boundary")
    assert q["answer_must"] and all(q["answer_must"]), q["id"]
    for group in q["answer_must"]:
        for alt in group:
            assert alt in sent[0], (q["id"], alt, sent[0])
assert max(per_doc.values()) <= 6 and len(per_doc) == len(docs), per_doc
print(f"questions: {len(qs)}, answerable: {n_ans}, unanswerable: {len(qs) - n_ans}, by_lang: {dict(by_lang)}")
print("answerable per article:", {k[:3]: v for k, v in sorted(per_doc.items())})
print("OK: keys, unique evidence (exactly once in corpus), answer_must inside the evidence sentence, empty evidence for unanswerable")
