"""Kosmos-G's vocabulary: fairseq's dictionary over the released SentencePiece model.

The official token ids (xichenpan/Kosmos-G, data/dict.txt and data/sentencepiece.bpe.model) are
fairseq's four specials (<s> <pad> </s> <unk>), the dict.txt pieces in order, <mask>, then the
five tags the task adds. transformers' XLM-R tokenizer over the same SentencePiece model gives
the same ids when dict.txt lists the model's pieces in its own order (SentencePiece id + 1): that
is checked here, piece by piece, rather than assumed.
"""

from __future__ import annotations

from pathlib import Path

OFFICIAL_TAGS = ("</doc>", "<image>", "</image>", "</chunk>", "</line>")
FAIRSEQ_SPECIALS = 4  # <s> <pad> </s> <unk>
SPM_CONTROLS = 3  # <unk> <s> </s>: SentencePiece's own, which dict.txt leaves out


def dictionary_pieces(dict_file: Path) -> list[str]:
    """dict.txt's pieces: one `piece count` per line."""
    pieces = []
    for number, line in enumerate(Path(dict_file).read_text(encoding="utf-8").splitlines(), 1):
        piece, _, count = line.rpartition(" ")
        if not piece or not count.strip().lstrip("-").isdigit():
            raise ValueError(f"{dict_file}:{number}: not a fairseq dictionary line ('piece count'): {line!r}")
        pieces.append(piece)
    return pieces


def official_vocabulary_size(spm_file: Path, dict_file: Path) -> int:
    """Rows of the official embedding, after checking that dict.txt is the SentencePiece model's
    pieces in its order (so XLM-R's tokenizer gives the official ids)."""
    import sentencepiece

    model = sentencepiece.SentencePieceProcessor(model_file=str(spm_file))
    expected = [model.id_to_piece(i) for i in range(SPM_CONTROLS, model.get_piece_size())]
    listed = dictionary_pieces(dict_file)
    for number, (piece, wanted) in enumerate(zip(listed, expected), 1):
        if piece != wanted:
            raise ValueError(f"{dict_file}:{number}: {piece!r} where {spm_file} has {wanted!r} "
                             f"(SentencePiece id {number + SPM_CONTROLS - 1}): the ids would not line up")
    if len(listed) != len(expected):
        raise ValueError(f"{dict_file}: {len(listed)} pieces, {spm_file} has {len(expected)} "
                         "besides its controls")
    return FAIRSEQ_SPECIALS + len(listed) + 1 + len(OFFICIAL_TAGS)  # + <mask>
