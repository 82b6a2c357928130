"""Slack's Block Kit limits, checked on what we send independently of slack-sdk (which skips some,
such as a section field's 2,000 characters)."""
from __future__ import annotations

# https://docs.slack.dev/reference/block-kit/ (blocks, block elements, composition objects, views)
MESSAGE_BLOCKS_MAX = 50
MODAL_BLOCKS_MAX = 100


def _text(node: dict | str | None) -> str:
    if isinstance(node, dict):
        return node.get("text", "")
    return node or ""


def block_kit_problems(blocks: list[dict], *, modal: bool = False) -> list[str]:
    """Every limit the blocks break, as readable lines ([] when Slack would take them)."""
    problems: list[str] = []

    def over(what: str, value: str | list | None, limit: int) -> None:
        if value is not None and len(value) > limit:
            problems.append(f"{what}: {len(value)} > {limit}")

    def element(el: dict, where: str) -> None:
        over(f"{where} action_id", el.get("action_id"), 255)
        kind = el.get("type")
        if kind == "button":
            over(f"{where} button text", _text(el.get("text")), 75)
            over(f"{where} button value", el.get("value"), 2000)
            over(f"{where} button url", el.get("url"), 3000)
            if el.get("style") not in (None, "primary", "danger"):
                problems.append(f"{where} button style {el['style']!r}")
        if kind == "static_select":
            options = el.get("options") or []
            over(f"{where} options", options, 100)
            over(f"{where} placeholder", _text(el.get("placeholder")), 150)
            for option in options:
                over(f"{where} option text", _text(option.get("text")), 75)
                over(f"{where} option value", option.get("value"), 150)
        if kind == "plain_text_input":
            over(f"{where} placeholder", _text(el.get("placeholder")), 150)
        confirm = el.get("confirm")
        if confirm is not None:
            for part, limit in (("title", 100), ("text", 300), ("confirm", 30), ("deny", 30)):
                if not _text(confirm.get(part)):
                    problems.append(f"{where} confirm without {part}")
                over(f"{where} confirm {part}", _text(confirm.get(part)), limit)
            if confirm.get("title", {}).get("type") != "plain_text":
                problems.append(f"{where} confirm title must be plain_text")

    over("blocks", blocks, MODAL_BLOCKS_MAX if modal else MESSAGE_BLOCKS_MAX)
    for index, block in enumerate(blocks):
        where = f"block {index} ({block.get('type')})"
        over(f"{where} block_id", block.get("block_id"), 255)
        kind = block.get("type")
        if kind == "header":
            over(f"{where} text", _text(block.get("text")), 150)
        elif kind == "section":
            if not block.get("text") and not block.get("fields"):
                problems.append(f"{where} has neither text nor fields")
            over(f"{where} text", _text(block.get("text")), 3000)
            fields = block.get("fields") or []
            over(f"{where} fields", fields, 10)
            for field in fields:
                over(f"{where} field text", _text(field), 2000)
            if block.get("accessory"):
                element(block["accessory"], where)
        elif kind == "context":
            over(f"{where} elements", block.get("elements") or [], 10)
            for el in block.get("elements") or []:
                over(f"{where} element text", _text(el), 3000)
        elif kind == "actions":
            over(f"{where} elements", block.get("elements") or [], 25)
            for el in block.get("elements") or []:
                element(el, where)
        elif kind == "input":
            over(f"{where} label", _text(block.get("label")), 2000)
            over(f"{where} hint", _text(block.get("hint")), 2000)
            element(block.get("element") or {}, where)
    return problems


def modal_problems(view: dict) -> list[str]:
    problems = block_kit_problems(view.get("blocks") or [], modal=True)
    for part in ("title", "submit", "close"):
        if len(_text(view.get(part))) > 24:
            problems.append(f"modal {part}: {len(_text(view.get(part)))} > 24")
    if len(view.get("private_metadata") or "") > 3000:
        problems.append("modal private_metadata > 3000")
    return problems
