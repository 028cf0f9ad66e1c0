"""Stop-word lists by Snowball language name. English is Lucene's default set (what BEIR's BM25
baseline, Elasticsearch's ``english`` analyzer, removes); the others are short lists of each
language's most frequent function words."""

from __future__ import annotations


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


STOP_WORDS: dict[str, frozenset[str]] = {
    "english": _set(
        "a an and are as at be but by for if in into is it no not of on or such that the their then there "
        "these they this to was will with"
    ),
    "german": _set(
        "aber als am an auch auf aus bei bin bis da das dass dem den der des die du ein eine einem einen "
        "einer eines er es für hat ich ihr im in ist ja mit nach nicht noch nur oder sich sie sind so um "
        "und uns von vor war wie wir wird zu zum zur über"
    ),
    "french": _set(
        "au aux avec ce ces dans de des du elle en est et il ils je la le les leur lui ma mais me même mes "
        "mon ne nous on ou par pas pour qu que qui sa se ses son sur ta te tes ton tu un une vous été être"
    ),
    "spanish": _set(
        "a al como con de del el ella en es esta este ha la las le lo los me mi no o para pero por que se "
        "si sin su sus te tu un una uno y ya"
    ),
    "italian": _set(
        "a ad al alla come con da dal dei del della di e gli ha ho i il in la le lo ma mi ne non o per più "
        "se si sono su tra un una uno è"
    ),
    "portuguese": _set(
        "a ao aos as com como da das de do dos e ela ele em entre era essa esse foi já mais mas na nas não "
        "no nos o os ou para pela pelo por que se sem seu sua são um uma é"
    ),
    "dutch": _set(
        "aan al als bij dan dat de den der die dit door een en er het hij in is je maar met naar niet nog "
        "of om ook op te tot uit van voor was wat we wel ze zich zijn"
    ),
}

# Words that carry no topic in a question; ignored when judging whether a passage covers it.
QUESTION_WORDS: dict[str, frozenset[str]] = {
    "english": _set(
        "about above after again all also am any anyone anything because been before being below between both "
        "can could did do does doing done down during each every few from further get gets getting got had has "
        "have having he her here hers herself him himself his how i i'm i've im its itself just know let like "
        "make may me might more most much must my myself need nor now off once only other our ours out over own "
        "please same she should so some someone something still tell than them themselves those through thanks "
        "too under until up us use using very want wants we were what whats when where whether which while who "
        "whom why would you your yours yourself"
    ),
}
