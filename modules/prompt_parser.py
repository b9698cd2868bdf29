"""Prompt language: composable `AND`, prompt editing / alternation schedules, attention weights,
and the conditioning containers the samplers read each step.

Behaviour follows docs spec `prompt-syntax.md` §5-§8 and §13 (A1111 v1.10.1 compatible). No prompt
is ever an error: whatever the grammar cannot interpret stays literal text.
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
import re
from collections import namedtuple

import lark

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Scheduling grammar (§6.1)

_SCHEDULE_GRAMMAR = r"""
// Top level: constructs mixed with stray bracket/colon characters, so unbalanced text still parses.
start: (_item | STRAY)*

prompt: _item*
_item: emphasized | scheduled | alternate | PLAIN

// Emphasis is only recognised so that brackets nested in it are handled; it is rendered verbatim.
!emphasized: "(" prompt _round_end
           | "[" prompt "]"
!_round_end: ")" | ":" prompt ")"

// [to:when] or [from:to:when]. The priority makes a bracket pair that can be editing/alternation
// win over reading its characters as strays.
scheduled.2: "[" _edit_texts _ows NUMBER _ows "]"
_edit_texts: prompt ":" | prompt ":" prompt ":"
alternate.2: "[" prompt _options "]"
_options: ("|" prompt)+

// (helper rules instead of `[..]`/`?` keep the number of Earley items, and so the time, down)
_ows: _WS?
STRAY: /[\[\]():]/
PLAIN: /(?:[^\\\[\]():|]|\\.)+/
_WS: /\s+/
%import common.SIGNED_NUMBER -> NUMBER
"""

schedule_parser = lark.Lark(_SCHEDULE_GRAMMAR, parser="earley")


class _Edit:
    """`[before:after:number]`; `before` is None for the `[after:number]` form."""
    __slots__ = ("before", "after", "number")

    def __init__(self, before, after, number):
        self.before = before
        self.after = after
        self.number = number


class _Alt:
    """`[a|b|...]`: one list of parts per option."""
    __slots__ = ("options",)

    def __init__(self, options):
        self.options = options


class _ToParts(lark.visitors.Transformer_NonRecursive):
    """Turn a parse tree into a list of str / _Edit / _Alt, adjacent strings joined.

    Non-recursive so that deeply nested brackets cannot hit Python's recursion limit."""

    def __default__(self, data, children, meta):  # start, prompt, emphasized: text kept verbatim
        parts: list = []
        for child in children:
            _extend(parts, child)
        return parts

    def scheduled(self, children):
        *texts, number = children
        before, after = (None, texts[0]) if len(texts) == 1 else texts
        return _Edit(before, after, str(number))

    def alternate(self, children):
        return _Alt(children)


def _extend(parts: list, item):
    """Append a str, node or list of them to parts, joining adjacent strings."""
    if item is None:
        return
    if isinstance(item, list):
        for sub in item:
            _extend(parts, sub)
    elif isinstance(item, str):
        if parts and isinstance(parts[-1], str):
            parts[-1] += item
        else:
            parts.append(str(item))
    else:
        parts.append(item)


# Escape pairs are skipped; a lone backslash (at the end or before a newline) matches no terminal of
# the grammar, so it makes the whole prompt unparseable.
_re_schedule_special = re.compile(r"\\[^\n]|(\\)|[()\[\]|]")

# editing needs `:` before a number, alternation needs `|`; a `[...]` with neither is plain text
_re_maybe_schedule = re.compile(r"\||:\s*[-+.0-9]")


# Earley parsing costs roughly 0.05-0.3 ms per character of bracketed text; beyond this many
# characters inside `[...]` a prompt is kept literal so that no input can stall a request.
MAX_SCHEDULE_PARSE_CHARS = 20_000


def _outer_square_spans(prompt: str):
    """(start, end) of every outermost matched `[...]` pair, or None when the grammar cannot parse
    the prompt (lone backslash, or a `|` outside every `[...]`)."""
    opens: list[int] = []
    close_of: dict[int, int] = {}
    pipes: list[int] = []
    for m in _re_schedule_special.finditer(prompt):
        if m.group(1):
            return None
        c = m.group(0)
        if c in "([":
            opens.append(m.start())
        elif c in ")]":
            if opens and prompt[opens[-1]] == ("(" if c == ")" else "["):
                close_of[opens.pop()] = m.start()
            else:
                # this closer lies inside every bracket still open, so none of those can be a pair
                opens.clear()
        elif c == "|":
            pipes.append(m.start())

    spans = []
    for start in sorted(close_of):
        if prompt[start] == "[" and (not spans or start >= spans[-1][1]):
            spans.append((start, close_of[start] + 1))

    span_starts = [s for s, _ in spans]
    for pos in pipes:
        k = bisect.bisect_right(span_starts, pos) - 1
        if k < 0 or pos >= spans[k][1]:
            return None
    return spans


@functools.lru_cache(maxsize=4096)
def _compile_schedule(prompt: str):
    """Parse a prompt into parts (str / _Edit / _Alt), or None when it must stay literal.

    Only the outermost `[...]` pairs go through the Earley parser; the text between them is literal.
    That gives the same result as parsing the whole prompt: every construct is a balanced bracket
    pair, and whether a `[...]` pair is editing/alternation does not depend on what surrounds it.
    It keeps the parser's inputs short, which matters because Earley is slow on this grammar.
    """
    if "[" not in prompt:
        # no editing or alternation possible; if the parse failed (stray `|`, lone `\`) the result
        # would be the prompt verbatim as well
        return [prompt]

    spans = _outer_square_spans(prompt)
    if spans is None:
        return None
    to_parse = sum(end - start for start, end in spans if _re_maybe_schedule.search(prompt, start, end))
    if to_parse > MAX_SCHEDULE_PARSE_CHARS:
        log.warning("prompt has %d characters of [...] to parse, more than %d: kept literal",
                    to_parse, MAX_SCHEDULE_PARSE_CHARS)
        return None

    return _compile_spans(prompt, 0, len(prompt), spans)


def _compile_spans(prompt: str, lo: int, hi: int, spans):
    parts: list = []
    pos = lo
    for start, end in spans:
        span_parts = _parse_span(prompt[start:end])
        if span_parts is None:
            return None
        if _edit_read_as_strays(prompt, start, end, span_parts, lo):
            # A1111's grammar reads this `[...]` as stray characters: its brackets stay text and
            # its inside is read like top-level text (constructs in it still work)
            inner = _outer_square_spans(prompt[start + 1:end - 1])
            if inner is None:
                return None
            inner_parts = _compile_spans(prompt, start + 1, end - 1,
                                         [(a + start + 1, b + start + 1) for a, b in inner])
            if inner_parts is None:
                return None
            span_parts = ["[", *inner_parts, "]"]
        _extend(parts, prompt[pos:start])
        _extend(parts, span_parts)
        pos = end
    _extend(parts, prompt[pos:hi])
    return parts


_STRAYS = "[]():"


def _edit_read_as_strays(prompt: str, start: int, end: int, span_parts, lo: int) -> bool:
    """Where A1111's grammar reads a prompt-editing `[...]` as plain text although it parses.

    Its top level lets every `[ ] ( ) :` be a stray character, so an editing construct is
    ambiguous with the reading where its own brackets and colon are strays too. Lark's Earley
    resolution takes that stray reading when an even number (2, 4, ...) of stray characters
    directly follows the `]`: `[a:0.5])]` and `[a:0.5]()::` stay text, `[a:0.5])` and `[a:0.5])))`
    do not. Characters that pair up (an emphasis `(...)`, `[...]`, another construct) are no
    strays; an empty pair `()` / `[]` is skipped, anything else ends the count. Alternation
    `[a|b]` has no stray reading (`|` is no stray) and is never affected; a `(` still open before
    the construct is left alone (the `)` after it may close that emphasis instead).
    """
    if len(span_parts) != 1 or not isinstance(span_parts[0], _Edit):
        return False
    strays, pos = 0, end
    while pos < len(prompt) and prompt[pos] in _STRAYS:
        if prompt.startswith(("()", "[]"), pos):
            pos += 2
            continue
        close = _pair_end(prompt, pos)
        if close is not None:
            break
        strays += 1
        pos += 1
    if strays < 2 or strays % 2:
        return False
    return not _open_round_before(prompt, lo, start)


def _pair_end(prompt: str, pos: int) -> int | None:
    """End of the bracket pair that A1111's grammar can form from prompt[pos], else None."""
    opener = prompt[pos]
    if opener not in "([":
        return None
    depth, colons, i = 0, 0, pos
    for m in _re_schedule_special.finditer(prompt, pos):
        c = m.group(0)
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
            if depth == 0:
                i = m.end()
                break
        if depth == 1 and c == "|":
            colons = -99  # alternation
    else:
        return None
    if prompt[i - 1] != (")" if opener == "(" else "]"):
        return None
    inner = prompt[pos + 1:i - 1]
    colons = inner.count(":") if colons >= 0 else 0
    if opener == "(":
        return i if colons <= 1 else None
    if colons == 0:
        return i
    parts = _parse_span(prompt[pos:i])
    return i if parts and len(parts) == 1 and isinstance(parts[0], (_Edit, _Alt)) else None


def _open_round_before(prompt: str, lo: int, start: int) -> bool:
    depth = 0
    for m in _re_schedule_special.finditer(prompt, lo, start):
        c = m.group(0)
        if c == "(":
            depth += 1
        elif c == ")" and depth:
            depth -= 1
    return depth > 0


@functools.lru_cache(maxsize=8192)
def _parse_span(span: str):
    """Parts of one outermost `[...]` pair, or None if the grammar rejects it. Cached on its own:
    while a prompt is being edited, most of its bracketed pieces stay the same."""
    if not _re_maybe_schedule.search(span):
        return [span]
    fast = _read_clean_span(span)
    if fast is not None:
        return fast
    try:
        tree = schedule_parser.parse(span)
    except lark.exceptions.LarkError:
        return None
    return _ToParts().transform(tree)


# -- a direct reader for the common, unambiguous case ------------------------------------------
# Earley is slow on this grammar (it dominated a job's prompt handling). A `[...]` whose every
# bracket pairs up and whose every `:` / `|` belongs to a construct has exactly one parse, which
# this reader builds directly; anything else (strays, lone backslashes, a `:` that belongs to
# nothing) goes to the grammar, so the result is the grammar's either way.

_re_when = re.compile(r"\s*([+-]?(?:\d+[eE][+-]?\d+|(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+))\s*\]")
_re_plain_run = re.compile(r"[^\\\[\]():|]+")


class _NotClean(Exception):
    pass


def _read_clean_span(span: str):
    try:
        item, end = _read_square(span, 0)
    except _NotClean:
        return None
    if end != len(span):
        return None
    parts: list = []
    _extend(parts, item)
    return parts


def _read_prompt(text: str, i: int):
    """Items of a `prompt` from i up to the first `] ) : |` (or the end): (parts, index)."""
    parts: list = []
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n or text[i + 1] == "\n":
                raise _NotClean
            _extend(parts, text[i:i + 2])
            i += 2
        elif c == "(":
            inside, j = _read_prompt(text, i + 1)
            if j < n and text[j] == ")":
                _extend(parts, ["(", inside, ")"])
                i = j + 1
            elif j < n and text[j] == ":":
                second, k = _read_prompt(text, j + 1)
                if k >= n or text[k] != ")":
                    raise _NotClean
                _extend(parts, ["(", inside, ":", second, ")"])
                i = k + 1
            else:
                raise _NotClean
        elif c == "[":
            item, i = _read_square(text, i)
            _extend(parts, item)
        elif c in "]):|":
            break
        else:
            m = _re_plain_run.match(text, i)
            _extend(parts, m.group(0))
            i = m.end()
    return parts, i


def _read_square(text: str, i: int):
    """One `[...]` construct starting at text[i] == "[": (item, index after it)."""
    n = len(text)
    first, j = _read_prompt(text, i + 1)
    if j >= n:
        raise _NotClean
    c = text[j]
    if c == "]":
        return ["[", first, "]"], j + 1
    if c == "|":
        options = [first]
        while j < n and text[j] == "|":
            option, j = _read_prompt(text, j + 1)
            options.append(option)
        if j >= n or text[j] != "]":
            raise _NotClean
        return _Alt(options), j + 1
    if c != ":":
        raise _NotClean
    m = _re_when.match(text, j + 1)
    if m:
        return _Edit(None, first, m.group(1)), m.end()
    second, k = _read_prompt(text, j + 1)
    if k >= n or text[k] != ":":
        raise _NotClean
    m = _re_when.match(text, k + 1)
    if not m:
        raise _NotClean
    return _Edit(first, second, m.group(1)), m.end()


def _walk_nodes(parts):
    """Every _Edit and _Alt, nested ones included (iterative: nesting depth is unbounded)."""
    pending = [parts]
    while pending:
        for part in pending.pop():
            if isinstance(part, _Edit):
                yield part
                pending.append(part.after)
                if part.before is not None:
                    pending.append(part.before)
            elif isinstance(part, _Alt):
                yield part
                pending.extend(part.options)


def _render(parts, step: int, whens: dict) -> str:
    """The text at `step`: FROM while step <= when, else TO; alternation option (step - 1) mod k."""
    out = []
    stack = [iter(parts)]
    while stack:
        for part in stack[-1]:
            if isinstance(part, str):
                out.append(part)
                continue
            if isinstance(part, _Edit):
                chosen = part.before if step <= whens[part.number] else part.after
            else:
                chosen = part.options[(step - 1) % len(part.options)]
            if chosen:
                stack.append(iter(chosen))
                break
        else:
            stack.pop()
    return "".join(out)


def get_learned_conditioning_prompt_schedules(prompts, base_steps, hires_steps=None, use_old_scheduling=False):
    """For each prompt, a list of `[end_at_step, text]` pairs sorted by step (§6.3).

    With `hires_steps`, the schedules are for the hires second pass: fractions in (1, 2] and integers
    above `base_steps` address that pass. `use_old_scheduling` reproduces the pre-1.6 rule (numbers
    below 1 are fractions, no hires offset; A1111 then also builds the schedule with `base_steps`).

    >>> get_learned_conditioning_prompt_schedules(["a [dog:cat:4] run"], 8)
    [[[4, 'a dog run'], [8, 'a cat run']]]
    """
    if hires_steps is None or use_old_scheduling:
        steps, int_offset, frac_offset = base_steps, 0, 0.0
    else:
        steps, int_offset, frac_offset = hires_steps, base_steps, 1.0

    def when_of(number: str) -> int:
        value = float(number)
        if use_old_scheduling:
            v = value * steps if value < 1 else value
        elif "." in number:
            v = (value - frac_offset) * steps
        else:
            v = value - int_offset
        # clamp before truncating: 1e999 gives inf (int() would raise), inf * 0 steps gives nan;
        # anything <= 0 behaves the same ("TO throughout")
        if not v >= -1.0:
            v = -1.0
        return math.trunc(min(v, steps))

    def schedule_for(prompt):
        parts = _compile_schedule(prompt)
        if parts is None:
            return [[steps, prompt]]
        ends = {steps}
        whens = {}
        has_alternation = False
        for node in _walk_nodes(parts):
            if isinstance(node, _Alt):
                has_alternation = True
            elif node.number not in whens:
                whens[node.number] = when = when_of(node.number)
                if when >= 1:
                    ends.add(when)
        if has_alternation:
            ends.update(range(1, steps + 1))
        return [[end, _render(parts, end, whens)] for end in sorted(ends)]

    cache = {}
    res = []
    for prompt in prompts:
        if prompt not in cache:
            cache[prompt] = schedule_for(prompt)
        res.append([list(entry) for entry in cache[prompt]])
    return res


# --------------------------------------------------------------------------------------------------
# Attention (§8)

re_attention = re.compile(r"""
      \\(?P<escaped>[()\[\]\\])?             # escape; any other backslash is dropped and ends the text
    | (?P<open>[(\[])
    | :\s*(?P<weight>[+-]?[.\d]+)\s*\)      # explicit weight closing a round group
    | (?P<close>[)\]])
    | (?P<text>[^\\()\[\]:]+|:)
""", re.X | re.S)

re_break = re.compile(r"\s*\bBREAK\b\s*", re.S)

_ROUND_MULTIPLIER = 1.1
_SQUARE_MULTIPLIER = 1 / 1.1


def parse_prompt_attention(text):
    """Split text into `[text, weight]` pairs; `BREAK` gives the marker pair `["BREAK", -1]`.

    >>> parse_prompt_attention("a (red:1.3) car")
    [['a ', 1.0], ['red', 1.3], [' car', 1.0]]
    """
    res = []  # [text, weight, is_break_marker]
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply_from(start, multiplier):
        # BREAK markers stay out of group multiplication (our deliberate deviation, §8.1)
        for seg in res[start:]:
            if not seg[2]:
                seg[1] *= multiplier

    def add_text(chunk):
        for i, piece in enumerate(re_break.split(chunk)):
            if i:
                res.append(["BREAK", -1, True])
            res.append([piece, 1.0, False])

    for m in re_attention.finditer(text):
        token, kind = m.group(0), m.lastgroup
        if kind == "escaped":
            res.append([m.group("escaped"), 1.0, False])
        elif token == "\\":
            # a backslash before anything but ( ) [ ] \ escapes nothing: it becomes an empty
            # segment (which groups weight like any other, as in A1111), and what follows is read
            # afresh, so it ends a text run (`x\BREAK` breaks, `\ BREAK` too)
            res.append(["", 1.0, False])
        elif kind == "open":
            (round_open if token == "(" else square_open).append(len(res))
        elif kind == "weight" and round_open:
            try:
                weight = float(m.group("weight"))
            except ValueError:
                # e.g. `(a:1.2.3)`: A1111 fails; we keep the text and close the group normally
                res.append([token[:-1], 1.0, False])
                weight = _ROUND_MULTIPLIER
            multiply_from(round_open.pop(), weight)
        elif token == ")" and round_open:
            multiply_from(round_open.pop(), _ROUND_MULTIPLIER)
        elif token == "]" and square_open:
            multiply_from(square_open.pop(), _SQUARE_MULTIPLIER)
        else:
            add_text(token)  # text, `:`, or a closer/weight with no open group to close

    for start in round_open:
        multiply_from(start, _ROUND_MULTIPLIER)
    for start in square_open:
        multiply_from(start, _SQUARE_MULTIPLIER)

    if not res:
        return [["", 1.0]]

    merged = [res[0]]
    for seg in res[1:]:
        last = merged[-1]
        if not seg[2] and not last[2] and seg[1] == last[1]:
            last[0] += seg[0]
        else:
            merged.append(seg)
    return [[t, w] for t, w, _ in merged]


# --------------------------------------------------------------------------------------------------
# Composable diffusion: AND (§5)

re_AND = re.compile(r"\bAND\b")
# groups: (text, weight or None); `.*?` keeps the text as short as possible so a trailing
# `:number` and trailing whitespace go to the other parts
re_weight = re.compile(r"^(.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$", re.S)


class SdConditioning(list):
    """A list of prompts for the text encoder, with extra facts some models need (SDXL: size)."""

    def __init__(self, prompts, is_negative_prompt=False, width=None, height=None, copy_from=None):
        super().__init__(prompts)
        if copy_from is None:
            copy_from = prompts
        self.is_negative_prompt = is_negative_prompt or getattr(copy_from, "is_negative_prompt", False)
        self.width = width or getattr(copy_from, "width", None)
        self.height = height or getattr(copy_from, "height", None)


def get_multicond_prompt_list(prompts):
    """Split each prompt at `AND` into weighted sub-prompts.

    Returns `(res_indexes, prompt_flat_list, prompt_indexes)`: for each prompt a list of
    `(index, weight)`, the distinct sub-prompt texts, and a dict text -> index.
    """
    res_indexes = []
    prompt_indexes = {}
    prompt_flat_list = SdConditioning([], copy_from=prompts)
    for prompt in prompts:
        indexes = []
        for subprompt in re_AND.split(prompt):
            text, weight = re_weight.search(subprompt).groups()
            weight = 1.0 if weight is None else float(weight)
            index = prompt_indexes.get(text)
            if index is None:
                index = prompt_indexes[text] = len(prompt_flat_list)
                prompt_flat_list.append(text)
            indexes.append((index, weight))
        res_indexes.append(indexes)
    return res_indexes, prompt_flat_list, prompt_indexes


# --------------------------------------------------------------------------------------------------
# Conditioning containers (§13)

ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])


class ComposableScheduledPromptConditioning:
    def __init__(self, schedules, weight=1.0):
        self.schedules: list[ScheduledPromptConditioning] = schedules
        self.weight: float = weight


class MulticondLearnedConditioning:
    def __init__(self, shape, batch):
        self.shape: tuple = shape  # the shape field is needed by DDIM/PLMS
        self.batch: list[list[ComposableScheduledPromptConditioning]] = batch


class DictWithShape(dict):
    """Dict of conditioning tensors (SDXL: crossattn, vector) that also answers `.shape`, which
    samplers read from a plain tensor cond."""

    def __init__(self, x, shape=None):
        super().__init__(x)
        self._shape = shape

    @property
    def shape(self):
        if "crossattn" in self:
            return self["crossattn"].shape
        if self._shape is not None:
            return self._shape
        return next(iter(self.values())).shape


def get_learned_conditioning(model, prompts, steps, hires_steps=None, use_old_scheduling=False):
    """For each prompt, its schedule as a list of ScheduledPromptConditioning(end_at_step, cond).

    The texts of one prompt's schedule are encoded together in one `model.get_learned_conditioning`
    call (as A1111 does: batch composition affects padding and emphasis normalisation); identical
    prompts are encoded once per call.
    """
    schedules = get_learned_conditioning_prompt_schedules(prompts, steps, hires_steps, use_old_scheduling)
    cache = {}
    res = []
    for prompt, schedule in zip(prompts, schedules):
        cached = cache.get(prompt)
        if cached is None:
            texts = SdConditioning([text for _, text in schedule], copy_from=prompts)
            conds = model.get_learned_conditioning(texts)
            cached = []
            for i, (end_at_step, _) in enumerate(schedule):
                if isinstance(conds, dict):
                    cond = {k: v[i] for k, v in conds.items()}
                else:
                    cond = conds[i]
                cached.append(ScheduledPromptConditioning(end_at_step, cond))
            cache[prompt] = cached
        res.append(cached)
    return res


def get_multicond_learned_conditioning(model, prompts, steps, hires_steps=None, use_old_scheduling=False):
    """Like get_learned_conditioning, but splits prompts at `AND` into weighted sub-prompts."""
    res_indexes, prompt_flat_list, _ = get_multicond_prompt_list(prompts)
    learned = get_learned_conditioning(model, prompt_flat_list, steps, hires_steps, use_old_scheduling)
    batch = [[ComposableScheduledPromptConditioning(learned[i], weight) for i, weight in indexes]
             for indexes in res_indexes]
    return MulticondLearnedConditioning(shape=(len(prompts),), batch=batch)


def _active_index(schedule, current_step) -> int:
    # §7: first entry with counter <= end step; A1111 falls back to the first entry
    for index, entry in enumerate(schedule):
        if current_step <= entry.end_at_step:
            return index
    return 0


def stack_conds(tensors):
    """Stack conds of possibly different token counts: shorter ones are padded by repeating their
    last token vector (prompts of different lengths past 75 tokens give different shapes)."""
    import torch  # imported here: parsing alone (token counter, infotext) should not load torch

    token_count = max(t.shape[0] for t in tensors)
    padded = []
    for t in tensors:
        missing = token_count - t.shape[0]
        if missing:
            t = torch.cat([t, t[-1:].expand(missing, *t.shape[1:])])
        padded.append(t)
    return torch.stack(padded)


def _stack_any(conds):
    first = conds[0]
    if isinstance(first, dict):
        return DictWithShape({k: stack_conds([c[k] for c in conds]).to(device=v.device, dtype=v.dtype)
                              for k, v in first.items()})
    return stack_conds(conds).to(device=first.device, dtype=first.dtype)


def reconstruct_cond_batch(c, current_step):
    """Batch tensor (or DictWithShape) of the conds active at `current_step` (§7 counter)."""
    return _stack_any([schedule[_active_index(schedule, current_step)].cond for schedule in c])


def reconstruct_multicond_batch(c: MulticondLearnedConditioning, current_step):
    """Returns `(conds_list, tensor)`: conds_list[i] = [(row in tensor, weight), ...] for image i."""
    tensors = []
    conds_list = []
    for composable_prompts in c.batch:
        conds_for_batch = []
        for composable in composable_prompts:
            schedule = composable.schedules
            conds_for_batch.append((len(tensors), composable.weight))
            tensors.append(schedule[_active_index(schedule, current_step)].cond)
        conds_list.append(conds_for_batch)
    return conds_list, _stack_any(tensors)
