"""The /churn slash command: customer card (or a choice of matches), top list and help, answered privately in the ack."""
from __future__ import annotations

import re
from dataclasses import dataclass

from slack_bolt import Ack, App
from slack_sdk import WebClient

from churnbot import blocks
from churnbot.identity import UNMAPPED_TEXT, owner_for_slack_user
from churnbot.queries import TOP_MAX, customer_card_data, customer_list_riskiest, owner_find
from crm_plugin.errors import CrmError
from crm_plugin.customers.selectors import customer_list_visible_to, customer_search_visible, user_sees_everyone


TOP_DEFAULT = 10
CHOICES_MAX = 10  # matches listed for a search; more would not fit a phone screen
# Slack escapes mentions in command text as <@U123ABC|name> (manifest: should_escape: true).
MENTION = re.compile(r"^<@([A-Z0-9]+)(?:\|[^>]*)?>$")
# ...and whatever else it recognises as <target|label> or <target>: <mailto:a@b.com|a@b.com>,
# <http://shop.example|shop.example>, <@U123|ana>, <#C123|general>, <!here>; &, < and > as entities.
SLACK_ENTITY = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
NOT_A_CUSTOMER = ("`/churn customer` looks up customers by name, email or id, not Slack people or channels. "
                  "For someone's book use `/churn top @someone`.")


def typed_text(text: str) -> str | None:
    """What the person typed, from Slack's escaped command text: an email link becomes the address,
    a web link its text. None when the text holds a mention of a person, channel or group."""
    mentioned = False

    def plain(match: re.Match) -> str:
        nonlocal mentioned
        target, label = match.group(1), match.group(2)
        if target[:1] and target[0] in "@#!":
            mentioned = True
            return ""
        if target.startswith("mailto:"):
            return target[len("mailto:"):]
        return label if label is not None else target

    unwrapped = SLACK_ENTITY.sub(plain, text)
    if mentioned:
        return None
    return unwrapped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@dataclass(frozen=True)
class Parsed:
    verb: str  # help | customer | top
    lookup: str = ""
    scope: str = "own"  # own | all | owner
    who: str = ""
    n: int = TOP_DEFAULT
    problem: str | None = None


def parse(text: str) -> Parsed:
    """Parse the command text; anything unexpected becomes help with a one-line problem."""
    words = (text or "").split()
    if not words or words[0].lower() == "help":
        return Parsed("help")
    verb, args = words[0].lower(), words[1:]
    if verb == "customer":
        lookup = typed_text(" ".join(args))
        if lookup is None:
            return Parsed("help", problem=NOT_A_CUSTOMER)
        if not lookup.strip():
            return Parsed("help", problem="`/churn customer` needs a name, email or id, "
                                          "e.g. `/churn customer C000123` or `/churn customer rita`.")
        return Parsed("customer", lookup=lookup)
    if verb == "top":
        scope, who, n = "own", "", TOP_DEFAULT
        rest = list(args)
        if rest and (rest[0].lower() == "all" or rest[0].startswith("@") or MENTION.match(rest[0])):
            first = rest.pop(0)
            scope, who = ("all", "") if first.lower() == "all" else ("owner", first)
        if rest:
            if len(rest) > 1 or not (rest[0].isascii() and rest[0].isdigit()) or not 1 <= int(rest[0]) <= TOP_MAX:
                return Parsed("help", problem=f"`/churn top` takes a number from 1 to {TOP_MAX}, got `{' '.join(rest)}`.")
            n = int(rest[0])
        return Parsed("top", scope=scope, who=who, n=n)
    return Parsed("help", problem=f"Unknown subcommand `{verb}`.")


def _reply(ack: Ack, message: tuple[str, list[dict]]) -> None:
    text, body = message
    ack(response_type="ephemeral", text=text, blocks=body)


def churn_command(ack: Ack, command: dict, client: WebClient) -> None:
    parsed = parse(command.get("text", ""))
    if parsed.verb == "help":
        _reply(ack, blocks.help_message(parsed.problem))
        return
    try:
        owner = owner_for_slack_user(slack_user_id=command["user_id"], client=client)
    except CrmError as exc:
        _reply(ack, blocks.text_message(exc.message))
        return
    if owner is None:
        _reply(ack, blocks.text_message(UNMAPPED_TEXT))
        return
    user = owner.user
    if parsed.verb == "customer":
        try:
            found = customer_search_visible(user=user, text=parsed.lookup, limit=CHOICES_MAX)
        except CrmError as exc:
            hint = {
                "not_found": " Try part of the name, the email or the shop's customer id (e.g. C000123); "
                             "`/churn top` lists your riskiest customers.",
                "forbidden": " Only the customer's owner and managers can see it.",
            }.get(exc.code, "")
            _reply(ack, blocks.text_message(exc.message + hint))
            return
        if found.total == 1:
            _reply(ack, blocks.customer_card(customer_card_data(customer=found.customers[0])))
        else:
            _reply(ack, blocks.customer_choices(found, text=parsed.lookup))
        return
    # top
    visible = customer_list_visible_to(user=user)
    if parsed.scope == "own":
        rows = customer_list_riskiest(visible=visible, owner=owner, limit=parsed.n)
        title = f"Your {_riskiest(parsed.n)}"
    elif not user_sees_everyone(user):
        _reply(ack, blocks.text_message(
            "Only managers can list other owners' customers. `/churn top` shows your own book."))
        return
    elif parsed.scope == "all":
        rows = customer_list_riskiest(visible=visible, owner=None, limit=parsed.n)
        title = f"The {_riskiest(parsed.n)} (everyone)"
    else:
        mention = MENTION.match(parsed.who)
        try:
            target = (owner_for_slack_user(slack_user_id=mention.group(1), client=client) if mention
                      else owner_find(handle=parsed.who))
        except CrmError as exc:
            _reply(ack, blocks.text_message(exc.message))
            return
        if target is None:
            _reply(ack, blocks.text_message(
                f"No account owner matches {parsed.who}. Mention them (@name) or use their CRM name or email."))
            return
        rows = customer_list_riskiest(visible=visible, owner=target, limit=parsed.n)
        title = f"{target.name}'s {_riskiest(parsed.n)}"
    _reply(ack, blocks.top_list(rows, title=title))


def _riskiest(n: int) -> str:
    return "riskiest customer" if n == 1 else f"{n} riskiest customers"


def register(app: App) -> None:
    app.command("/churn")(churn_command)
