"""Stop-word lists by Snowball language name. English is Lucene's default set (what BEIR's BM25
baseline, Elasticsearch's ``english`` analyzer, removes); the others are short lists of each
language's most frequent function words. Beside them, per language, the question words and
conversational filler that queries leave out of their ranking terms (see ``retrieval.query``)."""

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

# Question words and conversational filler, by language: interrogatives, auxiliaries and modals,
# personal pronouns, greetings and politeness. They are left out of a question's ranking terms and
# out of the "no good match" judgement (documents keep them), unless nothing else is left. Words
# that can carry the topic ("use", "get", "run", "down") and negations ("doesn't": a question about
# something that fails) are deliberately not here.
FILLER_WORDS: dict[str, frozenset[str]] = {
    "english": _set(
        "how what whats which who whom whose why when where whether "
        "am been being do does did doing done have has had having can could would should shall may might must "
        "i i'm i've i'd i'll me my mine myself we we're we've our ours ourselves you you're you've you'd your "
        "yours yourself yourselves he him his she her hers it's its itself they're them themselves "
        "someone somebody anyone anybody something anything about from "
        "please pls plz thanks thank thx hi hello hey dear ok okay just actually really kindly"
    ),
    "german": _set(
        "wie was welche welcher welches welchen wer wen wem wessen warum wieso weshalb wann wo woher wohin ob "
        "kann kannst können könnte könnten muss musst müssen soll sollte sollten darf habe hast haben hatte "
        "bin bist seid gibt mache macht machen tun ich mich mir mein meine meinen meiner dich dir dein deine "
        "euch euer man jemand etwas bitte danke hallo hi hey mal denn eigentlich"
    ),
    "french": _set(
        "comment quoi quel quelle quels quelles pourquoi quand où combien qu'est c'est est-ce "
        "peux peut pouvez pourrais pourriez puis dois doit devez faut suis es sommes êtes sont ai as avons avez "
        "ont fait faire fais y a j'ai moi toi nous quelqu'un quelque chose svp s'il plaît merci bonjour salut"
    ),
    "spanish": _set(
        "cómo qué quién quiénes cuál cuáles cuándo dónde porqué cuánto cuánta cuántos cuántas puedo puede "
        "pueden puedes podría podrías debo debe hay hago hacer hace son soy estoy está están tengo tiene yo "
        "mí tú usted ustedes nosotros alguien algo favor gracias hola oye"
    ),
    "italian": _set(
        "cosa che chi quale quali quando dove perché quanto quanti quante posso può puoi possono potrei "
        "potresti devo deve c'è hai fare faccio io me mio mia tu ti voi noi qualcuno qualcosa favore grazie "
        "ciao salve"
    ),
    "portuguese": _set(
        "qual quais quem quando onde porque porquê quanto quantos quantas posso pode podem poderia devo deve "
        "há tem tenho faço fazer sou estou está eu me meu minha você vocês nós alguém algo favor obrigado "
        "obrigada olá oi"
    ),
    "dutch": _set(
        "hoe welke welk wie waarom wanneer waar hoeveel kan kun kunt kunnen moet moeten zou zouden mag doe "
        "doet doen heb hebt heeft ben bent ik mij me mijn jij jou jouw u uw wij ons onze iemand iets "
        "alstublieft alsjeblieft graag dank bedankt hallo hoi"
    ),
}

# Filler phrases (regular expressions over the case-folded question) whose words can carry a topic
# elsewhere ("tell", "know", "way"), so they are dropped only inside the phrase.
FILLER_PHRASES: dict[str, tuple[str, ...]] = {
    "english": (
        r"\b(?:can|could|would|will) (?:you|u) (?:please )?(?:tell|show|explain(?: to)?|help) me\b",
        r"\b(?:tell|show|explain to) me\b",
        r"\b(?:do|does) (?:you|anyone|anybody|someone|somebody) know\b",
        r"\bi(?:'d| would) (?:like|love) to know\b",
        r"\bi (?:want|need|wanted) to know\b",
        r"\bi(?:'m| am| was) (?:wondering|curious)\b",
        r"\bis there (?:a|any) way to\b",
        r"\bis it possible to\b",
    ),
    "german": (
        r"\b(?:kannst du|können sie|könnten sie|kannst du mir bitte) (?:mir )?(?:sagen|erklären|zeigen)\b",
        r"\b(?:weißt du|wissen sie|weiß jemand)\b",
        r"\bich (?:möchte|will|würde gerne?) (?:gerne? )?wissen\b",
        r"\bgibt es eine möglichkeit\b",
    ),
    "french": (
        r"\b(?:pouvez-vous|peux-tu|pourriez-vous|pourrais-tu) me (?:dire|expliquer|montrer)\b",
        r"\b(?:savez-vous|sais-tu|quelqu'un sait)\b",
        r"\b(?:je voudrais|j'aimerais|je veux) savoir\b",
        r"\best-il possible de\b",
    ),
    "spanish": (
        r"\b(?:me )?(?:puedes|puede|podrías|podría) (?:decirme|explicarme|decir|explicar)\b",
        r"\b(?:sabes|sabe alguien|alguien sabe)\b",
        r"\b(?:quisiera|quiero|me gustaría) saber\b",
        r"\bes posible\b",
    ),
    "italian": (
        r"\b(?:mi )?(?:puoi|può|potresti|potrebbe) (?:dirmi|spiegarmi|dire|spiegare)\b",
        r"\b(?:sai|qualcuno sa)\b",
        r"\b(?:vorrei|voglio) sapere\b",
        r"\bè possibile\b",
    ),
    "portuguese": (
        r"\b(?:você )?(?:pode|poderia) (?:me )?(?:dizer|explicar)\b",
        r"\b(?:você sabe|alguém sabe)\b",
        r"\b(?:gostaria de|quero) saber\b",
        r"\bé possível\b",
    ),
    "dutch": (
        r"\b(?:kun je|kunt u|kan je) (?:me |mij )?(?:vertellen|uitleggen|zeggen)\b",
        r"\b(?:weet je|weet iemand)\b",
        r"\bik wil (?:graag )?weten\b",
        r"\bis het mogelijk om\b",
    ),
}
