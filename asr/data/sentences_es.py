"""A deterministic generator of natural-looking Spanish sentences for the synthetic corpus.

Source: the grammar, the lexicon and this code were written for this project; no external
text corpus is used, so the default corpus needs no download and carries no third-party
licence. Licence: MIT, the same as the project.

Why a grammar rather than a word list: a speech model trained on the corpus should hear real
Spanish word sequences (agreement, conjugation, contractions, numbers spoken as words), and
the sentences must be reproducible from a seed so that every machine builds the same corpus.
The generator combines a few hundred lexicon entries through ~25 sentence templates
(statements in five tenses, questions, exclamations, commands, weather, time, prices, ages,
dates, lists, subordinate clauses). It produces tens of thousands of distinct sentences;
`generate_sentences` draws them with a seeded RNG and drops duplicates.

Text is lowercase Spanish with accents, ñ, ü, ¿?¡! and commas, and never digits: numbers are
written as words so that the downstream normaliser (lowercase, strip accents and punctuation,
ñ -> ni) keeps every character.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

GENERATOR_VERSION = "1"

MIN_WORDS = 3
MAX_WORDS = 14


def _words(text: str) -> tuple[str, ...]:
    """A tuple of the space-separated words in `text` (keeps the lexicon tables compact)."""
    return tuple(text.split())


# Persons, in conjugation-table order.
YO, TU, EL, NOS, VOS, ELLOS = range(6)

# ---------------------------------------------------------------------------------------------
# Morphology: plurals, adjective agreement, determiners, numbers
# ---------------------------------------------------------------------------------------------

_UNACCENT = str.maketrans("áéíóú", "aeiou")
_PLURAL_EXCEPTIONS = {
    "jersey": "jerséis",
    "joven": "jóvenes",
    "examen": "exámenes",
    "gris": "grises",
    "lunes": "lunes",
    "martes": "martes",
    "miércoles": "miércoles",
    "jueves": "jueves",
    "viernes": "viernes",
    "autobús": "autobuses",
    "país": "países",
}
# Adjectives ending in a consonant that still have a distinct feminine form (-a).
_ADJ_FEMININE_A = {
    "trabajador",
    "hablador",
    "español",
    "francés",
    "alemán",
    "inglés",
    "portugués",
    "japonés",
}


def plural(word: str) -> str:
    """Plural of a noun or adjective by the regular spelling rules, with listed exceptions."""
    if word in _PLURAL_EXCEPTIONS:
        return _PLURAL_EXCEPTIONS[word]
    last = word[-1]
    if last in "aeiouáéó":
        return word + "s"
    if last == "z":
        return word[:-1] + "ces"
    if len(word) >= 2 and word[-2] in "áéíóú":  # camión -> camiones: the stress mark moves
        word = word[:-2] + word[-2].translate(_UNACCENT) + word[-1]
    return word + "es"


def agree(adjective: str, gender: str, is_plural: bool) -> str:
    """An adjective (given in masculine singular) agreeing with gender 'm'/'f' and number."""
    form = adjective
    if gender == "f":
        if adjective.endswith("o"):
            form = adjective[:-1] + "a"
        elif adjective in _ADJ_FEMININE_A:
            form = adjective.translate(_UNACCENT) + "a"
    return plural(form) if is_plural else form


_DETERMINERS: dict[str, tuple[str, str, str, str]] = {
    # kind: (masc. sg, fem. sg, masc. pl, fem. pl)
    "el": ("el", "la", "los", "las"),
    "un": ("un", "una", "unos", "unas"),
    "este": ("este", "esta", "estos", "estas"),
    "ese": ("ese", "esa", "esos", "esas"),
    "aquel": ("aquel", "aquella", "aquellos", "aquellas"),
    "mi": ("mi", "mi", "mis", "mis"),
    "tu": ("tu", "tu", "tus", "tus"),
    "su": ("su", "su", "sus", "sus"),
    "nuestro": ("nuestro", "nuestra", "nuestros", "nuestras"),
    "vuestro": ("vuestro", "vuestra", "vuestros", "vuestras"),
    "otro": ("otro", "otra", "otros", "otras"),
    "mucho": ("mucho", "mucha", "muchos", "muchas"),
    "alguno": ("algún", "alguna", "algunos", "algunas"),
    "varios": ("varios", "varias", "varios", "varias"),
}


def determiner(kind: str, gender: str, is_plural: bool) -> str:
    return _DETERMINERS[kind][(gender == "f") + 2 * is_plural]


_UNITS = _words(
    "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince "
    "dieciséis diecisiete dieciocho diecinueve veinte veintiuno veintidós veintitrés "
    "veinticuatro veinticinco veintiséis veintisiete veintiocho veintinueve"
)
_TENS = _words("_ _ _ treinta cuarenta cincuenta sesenta setenta ochenta noventa")
_HUNDREDS = _words(
    "_ ciento doscientos trescientos cuatrocientos quinientos seiscientos setecientos "
    "ochocientos novecientos"
)


def _below_thousand(n: int, gender: str | None) -> str:
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        if n == 100:
            return "cien"
        h = _HUNDREDS[hundreds]
        words.append(h[:-2] + "as" if gender == "f" and hundreds > 1 else h)
    if rest:
        if rest < 30:
            unit = _UNITS[rest]
        else:
            tens, ones = divmod(rest, 10)
            unit = _TENS[tens] + (f" y {_UNITS[ones]}" if ones else "")
        if unit.endswith("uno"):
            if gender == "f":
                unit = unit[:-1] + "a"
            elif gender == "m":
                unit = "veintiún" if unit == "veintiuno" else unit[:-1]
        words.append(unit)
    return " ".join(words)


def number_words(n: int, gender: str | None = None) -> str:
    """0 <= n < 1_000_000 in words. `gender` 'm'/'f' gives the form used before a noun
    (un libro, veintiuna casas, doscientas personas); None the counting form (uno)."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number out of range: {n}")
    if n == 0:
        return "cero"
    thousands, rest = divmod(n, 1000)
    words = []
    if thousands:
        words.append("mil" if thousands == 1 else _below_thousand(thousands, "m") + " mil")
    if rest:
        words.append(_below_thousand(rest, gender))
    return " ".join(words)


# ---------------------------------------------------------------------------------------------
# Lexicon
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Noun:
    word: str
    gender: str  # "m" | "f"
    tags: frozenset[str]
    mass: bool = False  # uncountable: "bebo café", "un poco de queso"

    def form(self, is_plural: bool) -> str:
        return plural(self.word) if is_plural else self.word


# category: "word:gender ..."; a word may appear in several categories (its tags merge).
_NOUN_TABLE: dict[str, str] = {
    "person": (
        "amigo:m amiga:f vecino:m vecina:f hermano:m hermana:f primo:m prima:f abuelo:m "
        "abuela:f padre:m madre:f hijo:m hija:f tío:m tía:f niño:m niña:f chico:m chica:f "
        "profesor:m profesora:f médico:m doctora:f enfermero:m enfermera:f cocinero:m "
        "cocinera:f camarero:m camarera:f estudiante:m conductor:m jefe:m jefa:f señor:m "
        "señora:f vendedor:m vendedora:f pintor:m pintora:f cartero:m panadero:m bombero:m "
        "abogada:f ingeniera:f compañero:m compañera:f turista:m alcalde:m pianista:f "
        "carpintero:m bibliotecaria:f sobrino:m sobrina:f nieto:m nieta:f"
    ),
    "kin": (
        "hermano:m hermana:f primo:m prima:f hijo:m hija:f tío:m tía:f sobrino:m sobrina:f "
        "nieto:m nieta:f amigo:m amiga:f"
    ),
    "family": (
        "hermano:m hermana:f primo:m prima:f hijo:m hija:f tío:m tía:f sobrino:m sobrina:f "
        "nieto:m nieta:f abuelo:m abuela:f padre:m madre:f"
    ),
    "animal": (
        "perro:m gato:m caballo:m pájaro:m vaca:f oveja:f gallina:f ratón:m pez:m tortuga:f "
        "conejo:m león:m mono:m burro:m zorro:m lobo:m oso:m paloma:f pingüino:m elefante:m "
        "jirafa:f cerdo:m pato:m serpiente:f mariposa:f ardilla:f cigüeña:f"
    ),
    "pet": "perro:m gato:m conejo:m tortuga:f pájaro:m caballo:m pez:m",
    "food": (
        "manzana:f naranja:f plátano:m pera:f fresa:f uva:f limón:m tomate:m cebolla:f "
        "patata:f zanahoria:f huevo:m galleta:f pastel:m bocadillo:m tortilla:f empanada:f "
        "sandía:f melón:m pimiento:m croqueta:f magdalena:f kiwi:m sándwich:m"
    ),
    "fruit": "manzana:f naranja:f plátano:m pera:f fresa:f uva:f limón:m sandía:f melón:m kiwi:m",
    "massfood": (
        "pan:m queso:m arroz:m carne:f pescado:m sopa:f ensalada:f chocolate:m jamón:m "
        "pollo:m fruta:f verdura:f mantequilla:f miel:f paella:f"
    ),
    "drink": "café:m leche:f zumo:m vino:m cerveza:f té:m chocolate:m limonada:f",
    "clothes": (
        "camisa:f camiseta:f zapato:m falda:f chaqueta:f abrigo:m sombrero:m bufanda:f "
        "vestido:m pantalón:m calcetín:m gorra:f corbata:f guante:m jersey:m bota:f"
    ),
    "obj": (
        "libro:m llave:f reloj:m teléfono:m lápiz:m bolígrafo:m cuaderno:m caja:f maleta:f "
        "botella:f vaso:m taza:f cuchillo:m cuchara:f tenedor:m plato:m bolso:m cámara:f "
        "lámpara:f espejo:m cuadro:m regalo:m juguete:m pelota:f ordenador:m mapa:m "
        "cartera:f mochila:f vela:f billete:m moneda:f muñeca:f cesta:f periódico:m "
        "paraguas:m"
    ),
    "read": (
        "libro:m carta:f periódico:m revista:f novela:f mensaje:m poema:m cuento:m "
        "noticia:f receta:f"
    ),
    "write": "carta:f mensaje:m poema:m cuento:m novela:f receta:f libro:m canción:f",
    "vehicle": "coche:m tren:m autobús:m avión:m barco:m bicicleta:f moto:f camión:m taxi:m",
    "drive": "coche:m autobús:m camión:m taxi:m moto:f tren:m",
    "wait": "tren:m autobús:m taxi:m avión:m barco:m",
    "instrument": "guitarra:f piano:m violín:m tambor:m flauta:f trompeta:f",
    "furniture": (
        "mesa:f silla:f cama:f sofá:m armario:m estantería:f escritorio:m nevera:f sillón:m"
    ),
    "room": (
        "cocina:f salón:m dormitorio:m baño:m pasillo:m garaje:m jardín:m terraza:f habitación:f"
    ),
    "place": (
        "parque:m escuela:f colegio:m mercado:m hospital:m biblioteca:f playa:f montaña:f "
        "ciudad:f pueblo:m oficina:f tienda:f restaurante:m calle:f plaza:f estación:f "
        "aeropuerto:m museo:m iglesia:f río:m campo:m bosque:m universidad:f farmacia:f "
        "panadería:f puerto:m teatro:m cine:m banco:m hotel:m supermercado:m piscina:f "
        "lago:m isla:f catedral:f castillo:m puente:m granja:f zoológico:m casa:f piso:m"
    ),
    "wild": "bosque:m campo:m río:m montaña:f granja:f lago:m zoológico:m jardín:m isla:f",
    "work": (
        "hospital:m oficina:f tienda:f restaurante:m escuela:f banco:m farmacia:f "
        "panadería:f hotel:m museo:m universidad:f mercado:m supermercado:m biblioteca:f "
        "aeropuerto:m teatro:m granja:f fábrica:f"
    ),
    "visit": "museo:m castillo:m catedral:f mercado:m zoológico:m teatro:m puerto:m pueblo:m",
    "walk": "parque:m playa:f ciudad:f calle:f plaza:f bosque:m campo:m jardín:m puerto:m",
    "swim": "playa:f piscina:f río:m lago:m",
    "wash": "coche:m moto:f bicicleta:f camión:m",
    "cook": (
        "tortilla:f empanada:f pastel:m croqueta:f patata:f huevo:m pimiento:m bocadillo:m "
        "magdalena:f galleta:f sopa:f arroz:m pollo:m pescado:m carne:f paella:f ensalada:f"
    ),
    "fragile": (
        "vaso:m taza:f plato:m botella:f espejo:m ventana:f lámpara:f teléfono:m juguete:m reloj:m"
    ),
    "open": (
        "puerta:f ventana:f caja:f maleta:f botella:f libro:m carta:f regalo:m nevera:f "
        "armario:m cajón:m"
    ),
    "dish": "plato:m vaso:m taza:f cuchillo:m cuchara:f tenedor:m",
    "clean": (
        "cocina:f salón:m baño:m coche:m mesa:f ventana:f habitación:f suelo:m garaje:m "
        "terraza:f casa:f piso:m"
    ),
    "body": (
        "cabeza:f espalda:f pierna:f brazo:m mano:f pie:m estómago:m muela:f garganta:f "
        "rodilla:f oído:m"
    ),
    "listen": "música:f radio:f canción:f noticia:f concierto:m",
}
_MASS_WORDS = frozenset(
    _words(
        "pan queso arroz carne pescado sopa ensalada chocolate jamón pollo fruta verdura "
        "mantequilla miel paella café leche zumo vino cerveza té limonada música"
    )
)
_INVARIANT_PLURAL = {"paraguas"}


def _build_nouns() -> dict[str, Noun]:
    genders: dict[str, str] = {}
    tags: dict[str, set[str]] = {}
    for tag, entries in _NOUN_TABLE.items():
        for entry in entries.split():
            word, gender = entry.split(":")
            if genders.setdefault(word, gender) != gender:
                raise ValueError(f"lexicon: {word!r} has two genders")
            tags.setdefault(word, set()).add(tag)
    return {w: Noun(w, genders[w], frozenset(t), mass=w in _MASS_WORDS) for w, t in tags.items()}


NOUNS = _build_nouns()


def _countable(tags: str) -> list[Noun]:
    """Nouns with any of `tags` that one can count: no "paraguas", no "cinco hijas" of a crowd."""
    return [
        n
        for n in nouns_with(*tags.split())
        if n.word not in _INVARIANT_PLURAL and not n.mass and "family" not in n.tags
    ]


def nouns_with(*tags: str) -> list[Noun]:
    """Nouns carrying any of `tags`, in a stable order."""
    return [n for n in NOUNS.values() if n.tags.intersection(tags)]


# adjective (masc. sg) -> (noun tags it fits, copula: "ser" | "estar" | "both")
_ADJECTIVES: dict[str, tuple[str, str]] = {
    "rojo": ("obj clothes vehicle furniture", "ser"),
    "azul": ("obj clothes vehicle furniture", "ser"),
    "verde": ("obj clothes vehicle furniture fruit", "both"),
    "amarillo": ("obj clothes vehicle furniture", "ser"),
    "blanco": ("obj clothes vehicle furniture animal", "ser"),
    "negro": ("obj clothes vehicle furniture animal", "ser"),
    "gris": ("obj clothes vehicle furniture animal", "ser"),
    "marrón": ("obj clothes furniture animal", "ser"),
    "morado": ("obj clothes", "ser"),
    "grande": ("obj vehicle furniture animal place room clothes", "ser"),
    "pequeño": ("obj vehicle furniture animal place room clothes", "ser"),
    "enorme": ("vehicle furniture animal place", "ser"),
    "largo": ("clothes read", "ser"),
    "corto": ("clothes read", "ser"),
    "nuevo": ("obj clothes vehicle furniture", "ser"),
    "viejo": ("obj clothes vehicle furniture animal", "ser"),
    "bonito": ("obj clothes vehicle furniture place room animal", "ser"),
    "feo": ("obj clothes vehicle furniture", "ser"),
    "caro": ("obj clothes vehicle furniture food instrument place", "ser"),
    "barato": ("obj clothes vehicle furniture food instrument", "ser"),
    "moderno": ("obj vehicle furniture place", "ser"),
    "antiguo": ("obj furniture place instrument", "ser"),
    "pesado": ("obj furniture instrument", "ser"),
    "ligero": ("obj clothes vehicle", "ser"),
    "cómodo": ("furniture clothes vehicle", "ser"),
    "elegante": ("clothes person place", "ser"),
    "interesante": ("read person place", "ser"),
    "aburrido": ("read", "ser"),
    "divertido": ("read person", "ser"),
    "famoso": ("person place", "ser"),
    "precioso": ("obj clothes place animal room", "ser"),
    "rápido": ("vehicle animal", "ser"),
    "lento": ("vehicle animal", "ser"),
    "alto": ("person", "ser"),
    "bajo": ("person", "ser"),
    "delgado": ("person", "ser"),
    "gordo": ("animal", "ser"),
    "simpático": ("person", "ser"),
    "amable": ("person", "ser"),
    "inteligente": ("person animal", "ser"),
    "alegre": ("person place", "ser"),
    "tímido": ("person", "ser"),
    "valiente": ("person", "ser"),
    "serio": ("person", "ser"),
    "trabajador": ("person", "ser"),
    "hablador": ("person", "ser"),
    "generoso": ("person", "ser"),
    "joven": ("person", "ser"),
    "mayor": ("person", "ser"),
    "guapo": ("person", "ser"),
    "tranquilo": ("person animal place", "both"),
    "ruidoso": ("place vehicle", "ser"),
    "español": ("person", "ser"),
    "francés": ("person", "ser"),
    "alemán": ("person", "ser"),
    "inglés": ("person", "ser"),
    "portugués": ("person", "ser"),
    "japonés": ("person", "ser"),
    "cansado": ("person animal", "estar"),
    "contento": ("person", "estar"),
    "triste": ("person", "estar"),
    "enfermo": ("person animal", "estar"),
    "ocupado": ("person", "estar"),
    "nervioso": ("person animal", "estar"),
    "preocupado": ("person", "estar"),
    "enfadado": ("person", "estar"),
    "dormido": ("person animal", "estar"),
    "delicioso": ("food massfood drink", "both"),
    "rico": ("food massfood drink", "estar"),
    "fresco": ("food massfood fruit", "both"),
    "caliente": ("massfood drink", "estar"),
    "frío": ("massfood drink", "estar"),
    "dulce": ("food fruit drink", "ser"),
    "salado": ("massfood", "estar"),
    "maduro": ("fruit", "estar"),
    "picante": ("massfood", "ser"),
    "roto": ("obj fragile vehicle furniture", "estar"),
    "limpio": ("obj clothes room place vehicle dish", "estar"),
    "sucio": ("obj clothes room place vehicle dish", "estar"),
    "lleno": ("work room", "estar"),
    "vacío": ("work room", "estar"),
    "abierto": ("work", "estar"),
    "cerrado": ("work", "estar"),
}

PERSON_NAMES: dict[str, str] = {
    **{
        n: "m"
        for n in _words(
            "juan pedro pablo javier miguel diego andrés fernando alejandro raúl jorge álvaro "
            "íñigo ramón carlos luis antonio manuel josé sergio david daniel mateo hugo lucas "
            "martín tomás joaquín ignacio rodrigo gonzalo enrique óscar víctor xavier"
        )
    },
    **{
        n: "f"
        for n in _words(
            "maría carmen lucía sofía elena isabel marta beatriz rosa paula inés teresa nuria "
            "begoña laura ana julia cristina patricia pilar alba irene clara sara noelia "
            "lorena ximena yolanda gabriela verónica mónica"
        )
    },
}
_NAMES = sorted(PERSON_NAMES)
CITIES = (
    *_words(
        "madrid barcelona sevilla valencia bilbao granada toledo málaga zaragoza salamanca "
        "córdoba cádiz segovia burgos oviedo santander pamplona murcia alicante lima bogotá "
        "quito caracas montevideo santiago guadalajara cartagena londres parís roma lisboa "
        "berlín tokio"
    ),
    *("buenos aires", "la paz", "la habana", "san sebastián", "nueva york"),
)
COUNTRIES = (
    *_words(
        "españa méxico argentina colombia perú chile venezuela ecuador bolivia uruguay "
        "paraguay cuba francia italia alemania portugal inglaterra japón china marruecos "
        "brasil canadá"
    ),
    "estados unidos",
)
LANGUAGES = _words("español inglés francés alemán italiano portugués chino japonés árabe ruso")
WEEKDAYS = _words("lunes martes miércoles jueves viernes sábado domingo")
MONTHS = _words(
    "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre"
)
SEASONS = ("primavera", "verano", "otoño", "invierno")

# ---------------------------------------------------------------------------------------------
# Verbs
# ---------------------------------------------------------------------------------------------

_ENDINGS = {
    "ar": {
        "pres": "o as a amos áis an",
        "pret": "é aste ó amos asteis aron",
        "imp": "aba abas aba ábamos abais aban",
    },
    "er": {
        "pres": "o es e emos éis en",
        "pret": "í iste ió imos isteis ieron",
        "imp": "ía ías ía íamos íais ían",
    },
    "ir": {
        "pres": "o es e imos ís en",
        "pret": "í iste ió imos isteis ieron",
        "imp": "ía ías ía íamos íais ían",
    },
}
_FUTURE_ENDINGS = _words("é ás á emos éis án")
HABER = ("he", "has", "ha", "hemos", "habéis", "han")
IR = ("voy", "vas", "va", "vamos", "vais", "van")


@dataclass(frozen=True)
class Verb:
    inf: str
    pres: tuple[str, ...]
    pret: tuple[str, ...]
    imp: tuple[str, ...]
    fut: tuple[str, ...]
    part: str


def _change_last(stem: str, old: str, new: str) -> str:
    i = stem.rfind(old)
    return stem if i < 0 else stem[:i] + new + stem[i + len(old) :]


def make_verb(
    inf: str,
    change: str = "",
    pres: str = "",
    pret: str = "",
    imp: str = "",
    fut_stem: str = "",
    part: str = "",
) -> Verb:
    """Conjugate `inf` by the regular rules; `change` is a stem change like "e>ie" (present,
    and -ir preterite e>i / o>u); the other arguments override whole tenses (6 forms)."""
    stem, cls = inf[:-2], inf[-2:].translate(_UNACCENT)  # oír conjugates like -ir
    tables = {t: [stem + e for e in ends.split()] for t, ends in _ENDINGS[cls].items()}
    if change:
        old, new = change.split(">")
        for p in (YO, TU, EL, ELLOS):
            tables["pres"][p] = _change_last(stem, old, new) + tables["pres"][p][len(stem) :]
        if cls == "ir":
            short = {"e": "i", "o": "u"}[old]
            for p in (EL, ELLOS):
                tables["pret"][p] = _change_last(stem, old, short) + tables["pret"][p][len(stem) :]
    if inf.endswith("car"):
        tables["pret"][YO] = stem[:-1] + "qué"
    elif inf.endswith("gar"):
        tables["pret"][YO] = stem + "ué"
    elif inf.endswith("zar"):
        tables["pret"][YO] = stem[:-1] + "cé"
    for tense, override in (("pres", pres), ("pret", pret), ("imp", imp)):
        if override:
            forms = override.split()
            if len(forms) == 1:  # only the first person singular differs (conozco)
                forms = forms + tables[tense][1:]
            tables[tense] = forms
    future_stem = fut_stem or inf
    return Verb(
        inf,
        tuple(tables["pres"]),
        tuple(tables["pret"]),
        tuple(tables["imp"]),
        tuple(future_stem + e for e in _FUTURE_ENDINGS),
        part or stem + ("ado" if cls == "ar" else "ido"),
    )


_IRREGULAR = {
    "ser": make_verb(
        "ser",
        pres="soy eres es somos sois son",
        pret="fui fuiste fue fuimos fuisteis fueron",
        imp="era eras era éramos erais eran",
    ),
    "estar": make_verb(
        "estar",
        pres="estoy estás está estamos estáis están",
        pret="estuve estuviste estuvo estuvimos estuvisteis estuvieron",
    ),
    "ir": make_verb(
        "ir",
        pres=" ".join(IR),
        pret="fui fuiste fue fuimos fuisteis fueron",
        imp="iba ibas iba íbamos ibais iban",
    ),
    "tener": make_verb(
        "tener",
        pres="tengo tienes tiene tenemos tenéis tienen",
        pret="tuve tuviste tuvo tuvimos tuvisteis tuvieron",
        fut_stem="tendr",
    ),
    "hacer": make_verb(
        "hacer",
        pres="hago",
        pret="hice hiciste hizo hicimos hicisteis hicieron",
        fut_stem="har",
        part="hecho",
    ),
    "poder": make_verb(
        "poder",
        change="o>ue",
        pret="pude pudiste pudo pudimos pudisteis pudieron",
        fut_stem="podr",
    ),
    "querer": make_verb(
        "querer",
        change="e>ie",
        pret="quise quisiste quiso quisimos quisisteis quisieron",
        fut_stem="querr",
    ),
    "venir": make_verb(
        "venir",
        pres="vengo vienes viene venimos venís vienen",
        pret="vine viniste vino vinimos vinisteis vinieron",
        fut_stem="vendr",
    ),
    "decir": make_verb(
        "decir",
        pres="digo dices dice decimos decís dicen",
        pret="dije dijiste dijo dijimos dijisteis dijeron",
        fut_stem="dir",
        part="dicho",
    ),
    "poner": make_verb(
        "poner",
        pres="pongo",
        pret="puse pusiste puso pusimos pusisteis pusieron",
        fut_stem="pondr",
        part="puesto",
    ),
    "salir": make_verb("salir", pres="salgo", fut_stem="saldr"),
    "traer": make_verb(
        "traer",
        pres="traigo",
        pret="traje trajiste trajo trajimos trajisteis trajeron",
        part="traído",
    ),
    "enviar": make_verb("enviar", pres="envío envías envía enviamos enviáis envían"),
    "saber": make_verb(
        "saber",
        pres="sé",
        pret="supe supiste supo supimos supisteis supieron",
        fut_stem="sabr",
    ),
    "ver": make_verb(
        "ver",
        pres="veo ves ve vemos veis ven",
        pret="vi viste vio vimos visteis vieron",
        imp="veía veías veía veíamos veíais veían",
        part="visto",
    ),
    "dar": make_verb(
        "dar", pres="doy das da damos dais dan", pret="di diste dio dimos disteis dieron"
    ),
    "conocer": make_verb("conocer", pres="conozco"),
    "conducir": make_verb(
        "conducir",
        pres="conduzco",
        pret="conduje condujiste condujo condujimos condujisteis condujeron",
    ),
    "traducir": make_verb(
        "traducir",
        pres="traduzco",
        pret="traduje tradujiste tradujo tradujimos tradujisteis tradujeron",
    ),
    "leer": make_verb("leer", pret="leí leíste leyó leímos leísteis leyeron", part="leído"),
    "recoger": make_verb("recoger", pres="recojo"),
    "abrir": make_verb("abrir", part="abierto"),
    "escribir": make_verb("escribir", part="escrito"),
    "romper": make_verb("romper", part="roto"),
    "volver": make_verb("volver", change="o>ue", part="vuelto"),
    "devolver": make_verb("devolver", change="o>ue", part="devuelto"),
    "nacer": make_verb("nacer", pres="nazco"),
    "oír": make_verb(
        "oír",
        pres="oigo oyes oye oímos oís oyen",
        pret="oí oíste oyó oímos oísteis oyeron",
        imp="oía oías oía oíamos oíais oían",
        fut_stem="oir",
        part="oído",
    ),
}
_STEM_CHANGE = {
    "pensar": "e>ie",
    "cerrar": "e>ie",
    "empezar": "e>ie",
    "preferir": "e>ie",
    "perder": "e>ie",
    "entender": "e>ie",
    "despertar": "e>ie",
    "merendar": "e>ie",
    "nevar": "e>ie",
    "probar": "o>ue",
    "doler": "o>ue",
    "llover": "o>ue",
    "dormir": "o>ue",
    "encontrar": "o>ue",
    "contar": "o>ue",
    "costar": "o>ue",
    "recordar": "o>ue",
    "almorzar": "o>ue",
    "acostar": "o>ue",
    "mostrar": "o>ue",
    "jugar": "u>ue",
    "pedir": "e>i",
    "servir": "e>i",
    "repetir": "e>i",
}
_verb_cache: dict[str, Verb] = {}


def verb(inf: str) -> Verb:
    """The conjugation tables of an infinitive (irregulars from the table, others by rule)."""
    v = _verb_cache.get(inf)
    if v is None:
        v = _IRREGULAR.get(inf) or make_verb(inf, change=_STEM_CHANGE.get(inf, ""))
        _verb_cache[inf] = v
    return v


def conjugate(inf: str, tense: str, person: int) -> str:
    """tense: pres | pret | imp | fut | perf (he comido) | ira (voy a comer)."""
    v = verb(inf)
    if tense == "perf":
        return f"{HABER[person]} {v.part}"
    if tense == "ira":
        return f"{IR[person]} a {inf}"
    return getattr(v, tense)[person]


# Transitive verbs: infinitive -> (object tags, subject may be an animal)
_TRANSITIVE: dict[str, tuple[str, bool]] = {
    "comer": ("food massfood", True),
    "beber": ("drink", True),
    "tomar": ("drink massfood", False),
    "comprar": ("food massfood drink obj clothes read vehicle instrument furniture", False),
    "vender": ("obj clothes vehicle instrument furniture food", False),
    "leer": ("read", False),
    "escribir": ("write", False),
    "buscar": ("obj clothes person pet", True),
    "encontrar": ("obj clothes person pet", True),
    "perder": ("obj clothes", False),
    "ver": ("obj person animal vehicle", True),
    "mirar": ("obj person animal vehicle", True),
    "abrir": ("open", False),
    "cerrar": ("open", False),
    "limpiar": ("clean dish", False),
    "lavar": ("clothes dish fruit wash", False),
    "cocinar": ("cook", False),
    "preparar": ("cook drink", False),
    "llevar": ("obj clothes food", False),
    "traer": ("obj clothes food drink read", True),
    "romper": ("fragile", True),
    "pintar": ("furniture room", False),
    "conducir": ("drive", False),
    "tocar": ("instrument", False),
    "necesitar": ("obj clothes food drink vehicle", False),
    "tener": ("obj clothes vehicle pet instrument", False),
    "llamar": ("person", False),
    "ayudar": ("person", False),
    "visitar": ("person visit", False),
    "esperar": ("person wait", True),
    "pedir": ("food massfood drink", False),
    "dibujar": ("animal obj vehicle", False),
    "cuidar": ("person pet", False),
    "escuchar": ("listen", True),
    "olvidar": ("obj clothes", False),
    "guardar": ("obj clothes food", False),
    "usar": ("obj vehicle", False),
    "arreglar": ("fragile vehicle furniture", False),
    "recoger": ("obj clothes person", False),
    "conocer": ("person", False),
    "saludar": ("person", True),
    "abrazar": ("person", False),
    "probar": ("food massfood drink", False),
    "compartir": ("food massfood obj", False),
}
# Ditransitive: infinitive -> object tags ("le regalé un libro a mi madre")
_DITRANSITIVE: dict[str, str] = {
    "regalar": "obj clothes read instrument pet",
    "dar": "obj food read",
    "enviar": "write",
    "prestar": "obj clothes vehicle",
    "devolver": "obj read clothes",
    "mostrar": "obj read",
    "traer": "obj food drink",
    "vender": "vehicle furniture instrument",
    "comprar": "obj clothes food",
    "leer": "read",
}
# Intransitive verbs with a place: infinitive -> (preposition, place tags, cities?, animals?)
_MOTION: dict[str, tuple[str, str, bool, bool]] = {
    "vivir": ("en", "place", True, True),
    "trabajar": ("en", "work", True, False),
    "estudiar": ("en", "work", True, False),
    "ir": ("a", "place work visit", True, False),
    "viajar": ("a", "", True, False),
    "llegar": ("a", "place", True, False),
    "volver": ("a", "place", True, False),
    "venir": ("a", "place", True, False),
    "salir": ("de", "place work", True, False),
    "entrar": ("en", "work room", False, True),
    "pasear": ("por", "walk", True, True),
    "caminar": ("por", "walk", False, True),
    "correr": ("por", "walk", False, True),
    "nadar": ("en", "swim", False, True),
    "dormir": ("en", "room", False, True),
    "jugar": ("en", "walk room", False, True),
    "comer": ("en", "work room", False, False),
    "cenar": ("en", "work room", False, False),
    "esperar": ("en", "place", False, False),
}
_INTRANSITIVE = _words(
    "cantar bailar cocinar nadar dibujar correr escribir leer trabajar estudiar dormir "
    "pintar conducir hablar"
)
_MANNER = (
    "muy bien",
    "bastante bien",
    "muy mal",
    "rápidamente",
    "despacio",
    "con cuidado",
    "en silencio",
    "tranquilamente",
    "mucho",
    "poco",
    "otra vez",
    "sin prisa",
    "con alegría",
)
_TRANSPORT = (
    "en tren",
    "en coche",
    "en autobús",
    "en avión",
    "en barco",
    "en bicicleta",
    "en moto",
    "en taxi",
    "a pie",
)

_TIME = {
    "pres": (
        "hoy",
        "ahora",
        "todos los días",
        "cada mañana",
        "siempre",
        "a veces",
        "los fines de semana",
        "por la tarde",
        "por las mañanas",
        "normalmente",
        "casi siempre",
        "de vez en cuando",
        "cada noche",
        "todas las semanas",
    ),
    "pret": (
        "ayer",
        "anoche",
        "anteayer",
        "la semana pasada",
        "el mes pasado",
        "el año pasado",
        "el verano pasado",
        "ayer por la tarde",
        "ayer por la mañana",
        "el otro día",
        "aquella noche",
    ),
    "imp": (
        "antes",
        "hace muchos años",
        "en aquella época",
        "todos los veranos",
        "cada domingo",
        "de vez en cuando",
        "entonces",
        "siempre",
    ),
    "fut": (
        "mañana",
        "pasado mañana",
        "la semana que viene",
        "el año que viene",
        "pronto",
        "este fin de semana",
        "esta noche",
        "el mes que viene",
        "mañana por la mañana",
        "algún día",
    ),
    "perf": ("hoy", "esta mañana", "esta semana", "este año", "este mes", "esta tarde"),
}
_TIME["ira"] = _TIME["fut"]

_SUBJECT_PRONOUNS: tuple[tuple[str, int, str, bool], ...] = (
    ("yo", YO, "m", False),
    ("yo", YO, "f", False),
    ("tú", TU, "m", False),
    ("tú", TU, "f", False),
    ("él", EL, "m", False),
    ("ella", EL, "f", False),
    ("usted", EL, "m", False),
    ("usted", EL, "f", False),
    ("nosotros", NOS, "m", True),
    ("nosotras", NOS, "f", True),
    ("vosotros", VOS, "m", True),
    ("ellos", ELLOS, "m", True),
    ("ellas", ELLOS, "f", True),
    ("ustedes", ELLOS, "m", True),
)
_DATIVE = ("me", "te", "le", "nos", "os", "les")
_REFLEXIVE = ("me", "te", "se", "nos", "os", "se")
_STRONG = ("mí", "ti", "él", "nosotros", "vosotros", "ellos")


# Professions with their feminine form, for "mi vecina es médica".
_JOBS = (
    ("médico", "médica"),
    ("profesor", "profesora"),
    ("cocinero", "cocinera"),
    ("pintor", "pintora"),
    ("panadero", "panadera"),
    ("bombero", "bombera"),
    ("carpintero", "carpintera"),
    ("vendedor", "vendedora"),
    ("enfermero", "enfermera"),
    ("camarero", "camarera"),
    ("abogado", "abogada"),
    ("ingeniero", "ingeniera"),
    ("arquitecto", "arquitecta"),
    ("veterinario", "veterinaria"),
    ("fontanero", "fontanera"),
    ("peluquero", "peluquera"),
    ("periodista", "periodista"),
    ("dentista", "dentista"),
    ("estudiante", "estudiante"),
    ("policía", "policía"),
    ("pianista", "pianista"),
    ("futbolista", "futbolista"),
)
_SPORTS = ("fútbol", "tenis", "baloncesto", "ajedrez", "golf", "voleibol", "balonmano")
_OUTINGS = (
    "al cine",
    "a la playa",
    "al teatro",
    "a la montaña",
    "de compras",
    "de excursión",
    "al campo",
    "a conciertos",
    "al museo",
)
_SHOWS = ("películas", "series", "el fútbol", "las noticias", "dibujos animados", "documentales")
_HOBBY_VERBS = _words(
    "cantar bailar nadar cocinar pintar viajar dibujar pasear correr dormir leer escribir esquiar"
)
_COMPANIONS = (
    "familia",
    "perro",
    "madre",
    "padre",
    "hermano",
    "hermana",
    "novia",
    "novio",
    "abuela",
    "jefe",
    "hijos",
    "amigos",
)
_CONDITIONS = (
    "mañana hace buen tiempo",
    "no llueve",
    "tenemos tiempo",
    "hay suerte",
    "termino pronto",
    "puedes",
    "quieres",
    "el tren llega a tiempo",
    "no hace frío",
)
_GREETINGS = (
    "feliz cumpleaños",
    "buenos días",
    "buenas tardes",
    "buenas noches",
    "muchas gracias",
    "hasta mañana",
    "hasta luego",
    "enhorabuena por el premio",
    "buen viaje",
    "mucha suerte",
    "feliz navidad",
    "feliz año nuevo",
)
_FEELINGS = ("frío", "calor", "sueño", "hambre", "sed", "miedo", "prisa")
_LOCATION_PREPS = (
    "encima de",
    "debajo de",
    "detrás de",
    "delante de",
    "al lado de",
    "cerca de",
    "dentro de",
    "junto a",
    "en",
)
_FAVOURITES = (
    ("color", "m"),
    ("comida", "f"),
    ("libro", "m"),
    ("película", "f"),
    ("canción", "f"),
    ("deporte", "m"),
    ("animal", "m"),
    ("ciudad", "f"),
    ("estación del año", "f"),
    ("número", "m"),
    ("plato", "m"),
    ("grupo de música", "m"),
)
# "¿quién ha roto el vaso?": (verb, tags of the thing)
_WHO_DID = (
    ("romper", "fragile"),
    ("abrir", "open"),
    ("cerrar", "open"),
    ("perder", "obj"),
    ("traer", "food obj"),
    ("comprar", "obj clothes food"),
    ("leer", "read"),
    ("limpiar", "clean"),
    ("escribir", "write"),
    ("comer", "food"),
)
_COMMAND_VERBS = tuple(
    v
    for v in _TRANSITIVE
    if v not in ("tener", "conocer", "ver", "perder", "olvidar", "romper", "necesitar")
)
# Transitive verbs that read naturally with "en <place>" / "con <person>" after the object.
_PLACE_ADJUNCT = frozenset(
    _words(
        "comer beber tomar comprar vender leer escribir buscar encontrar perder ver esperar "
        "pedir olvidar dibujar tocar conocer saludar escuchar probar compartir"
    )
)
_COMPANY_ADJUNCT = frozenset(
    _words(
        "comer beber tomar comprar ver visitar esperar buscar cocinar preparar pintar limpiar "
        "dibujar escuchar compartir probar"
    )
)
_MANNER_ADJUNCT = frozenset(
    _words(
        "comer beber cocinar preparar limpiar lavar pintar dibujar escribir leer conducir tocar "
        "cuidar arreglar guardar escuchar buscar"
    )
)
# Adjectives that take no degree adverb ("muy inglés", "muy rojo" sound wrong).
_NO_DEGREE = frozenset(
    _words(
        "español francés alemán inglés portugués japonés rojo azul verde amarillo blanco negro "
        "gris marrón morado enorme precioso roto dormido abierto cerrado lleno vacío"
    )
)
# States that read well after "está" but oddly next to the noun ("rompió una ventana rota").
_PREDICATIVE_ONLY = frozenset(_words("roto dormido lleno vacío abierto cerrado"))
# People one naturally says "mi ..." of.
_CLOSE = frozenset(
    _words(
        "amigo amiga vecino vecina hermano hermana primo prima abuelo abuela padre madre hijo "
        "hija tío tía profesor profesora jefe jefa compañero compañera médico doctora sobrino "
        "sobrina nieto nieta"
    )
)
# Things and places that can have an owner: "la casa de mi abuela", "el coche de pedro".
_OWNABLE_TAGS = frozenset(_words("obj clothes vehicle pet instrument furniture read"))
_OWNABLE_PLACES = frozenset(_words("casa piso jardín tienda oficina granja habitación"))
_POSSESSIVES = frozenset(("mi", "tu", "su", "nuestro", "vuestro"))
_MODALS = ("querer", "poder", "necesitar", "preferir", "pensar", "deber", "esperar", "intentar")
_WHERE_WORD = {"a": "adónde", "de": "de dónde", "por": "por dónde", "en": "dónde"}


@dataclass(frozen=True)
class Phrase:
    """A noun phrase with what agreement needs: gender, number, grammatical person and, when
    it has one, the head noun (whose tags say which adjectives fit it)."""

    text: str
    gender: str = "m"
    plural: bool = False
    person: int = EL
    noun: Noun | None = None

    @property
    def is_animal(self) -> bool:
        return self.noun is not None and "animal" in self.noun.tags


_PERSON_NOUN = Noun("persona", "f", frozenset({"person"}))


def _contract(text: str) -> str:
    """a + el -> al, de + el -> del (the pronoun él carries an accent, so it is not touched)."""
    text = re.sub(r"\ba el\b", "al", text)
    return re.sub(r"\bde el\b", "del", text)


# ---------------------------------------------------------------------------------------------
# The grammar
# ---------------------------------------------------------------------------------------------


class _Grammar:
    """Sentence templates drawing from the lexicon with one seeded RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng
        templates: list[tuple[Callable[[], str], int]] = [
            (self.action, 24),
            (self.motion, 12),
            (self.copula, 9),
            (self.location, 5),
            (self.there_is, 5),
            (self.liking, 6),
            (self.ditransitive, 5),
            (self.numbers, 7),
            (self.routine, 4),
            (self.weather, 4),
            (self.question, 14),
            (self.exclamation, 3),
            (self.listing, 3),
            (self.complex, 7),
            (self.modal, 5),
            (self.command, 3),
            (self.identity, 4),
            (self.activity, 4),
        ]
        self._fns = [t for t, _ in templates]
        self._weights = [w for _, w in templates]

    # -- small helpers ----------------------------------------------------------------------

    def pick(self, seq: Sequence[str]) -> str:
        return self.r.choice(seq)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def sentence(self) -> str:
        fn = self.r.choices(self._fns, self._weights)[0]
        text = " ".join(fn().split())
        text = re.sub(r" ([,?!])", r"\1", text).replace("¿ ", "¿").replace("¡ ", "¡")
        return _contract(text)

    def name(self) -> Phrase:
        n = self.r.choice(_NAMES)
        return Phrase(n, PERSON_NAMES[n], noun=_PERSON_NOUN)

    def adjective_for(
        self, noun: Noun | None, copula: str | None = None, attributive: bool = False
    ) -> str | None:
        """A random adjective that fits `noun` (and, if given, is used with that copula).
        `attributive`: it will stand next to the noun, where states like "roto" sound odd."""
        noun = noun or _PERSON_NOUN
        options = [
            a
            for a, (tags, cop) in _ADJECTIVES.items()
            if noun.tags.intersection(tags.split())
            and (copula is None or cop in (copula, "both"))
            and not (attributive and a in _PREDICATIVE_ONLY)
        ]
        return self.r.choice(options) if options else None

    def small_number(self) -> int:
        return self.r.choice((2, 2, 3, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 24, 30))

    def noun_phrase(
        self,
        tags: str,
        dets: Sequence[str] = ("el", "el", "un", "este", "ese", "mi", "tu", "su", "nuestro"),
        is_plural: bool | None = None,
        adj_p: float = 0.35,
        owner_p: float = 0.1,
        number_p: float = 0.15,
    ) -> Phrase:
        """det + noun (+ adjective) (+ de + owner), agreeing in gender and number."""
        noun = self.r.choice(nouns_with(*tags.split()))
        if noun.mass or noun.word in _INVARIANT_PLURAL:
            is_plural = False
        elif is_plural is None:
            is_plural = self.chance(0.35)
        det_kind = self.r.choice(dets)
        if det_kind == "un" and noun.mass:
            det_kind = "el"
        is_person = "person" in noun.tags
        if is_person and det_kind in _POSSESSIVES and noun.word not in _CLOSE:
            det_kind = self.pick(("el", "este", "ese", "aquel"))
        elif "family" in noun.tags and det_kind not in _POSSESSIVES and self.chance(0.8):
            det_kind = self.pick(("mi", "tu", "su", "nuestro"))  # "mi hermano", not "un hermano"
        det = determiner(det_kind, noun.gender, is_plural)
        if is_plural and det_kind == "un" and self.chance(number_p / 0.3):
            det = self.r.choice(
                (
                    number_words(self.small_number(), noun.gender),
                    determiner("alguno", noun.gender, True),
                    determiner("varios", noun.gender, True),
                    determiner("mucho", noun.gender, True),
                )
            )
        words = [det, noun.form(is_plural)]
        if self.chance(adj_p):
            adj = self.adjective_for(noun, "ser" if is_person else None, attributive=True)
            if adj:
                words.append(agree(adj, noun.gender, is_plural))
        ownable = noun.tags.intersection(_OWNABLE_TAGS) or noun.word in _OWNABLE_PLACES
        if det_kind == "el" and ownable and self.chance(owner_p):
            words += ["de", self.owner()]
        person = ELLOS if is_plural else EL
        return Phrase(" ".join(words), noun.gender, is_plural, person, noun)

    def owner(self) -> str:
        if self.chance(0.5):
            return self.name().text
        kin = NOUNS[self.pick(sorted(_CLOSE))]
        is_plural = self.chance(0.3)
        det = determiner(self.pick(("mi", "tu", "su", "nuestro", "el")), kin.gender, is_plural)
        return f"{det} {kin.form(is_plural)}"

    def person_phrase(self) -> Phrase:
        """A third-person human: a name, two names, or a noun phrase like "mi vecina"."""
        roll = self.r.random()
        if roll < 0.35:
            return self.name()
        if roll < 0.45:
            a, b = self.name(), self.name()
            if a.text == b.text:
                return a
            gender = "f" if a.gender == b.gender == "f" else "m"
            return Phrase(f"{a.text} y {b.text}", gender, True, ELLOS, _PERSON_NOUN)
        return self.noun_phrase(
            "person",
            dets=("el", "mi", "mi", "tu", "su", "nuestro", "este", "aquel"),
            adj_p=0.15,
            owner_p=0.0,
            number_p=0.05,
        )

    def subject(self, animals: bool = False) -> tuple[str, Phrase]:
        """(surface text, agreement). Pronouns are often dropped, as Spanish speakers do."""
        roll = self.r.random()
        if roll < 0.4:
            text, person, gender, is_plural = self.r.choice(_SUBJECT_PRONOUNS)
            dropped = person in (YO, TU, NOS) and self.chance(0.6)
            return ("" if dropped else text), Phrase(text, gender, is_plural, person, _PERSON_NOUN)
        if animals and roll < 0.6:
            p = self.noun_phrase("animal", dets=("el", "el", "mi", "tu", "su", "este", "un"))
            return p.text, p
        p = self.person_phrase()
        return p.text, p

    def tense(self) -> str:
        tenses = ("pres", "pret", "imp", "fut", "perf", "ira")
        return self.r.choices(tenses, (5, 5, 2, 2, 2, 2))[0]

    def time_for(self, tense: str) -> str:
        """A time expression that fits the tense (ayer + pretérito, mañana + futuro, ...)."""
        roll = self.r.random()
        if tense == "pret" and roll < 0.25:
            if self.chance(0.5):
                unit = self.pick(("días", "semanas", "meses", "años"))
                n = number_words(self.r.choice((2, 3, 4, 5, 10)), "f" if unit == "semanas" else "m")
                return f"hace {n} {unit}"
            if self.chance(0.5):
                return f"el {self.pick(WEEKDAYS)} pasado"
            return f"en {self.pick(MONTHS)}"
        if tense in ("fut", "ira") and roll < 0.25:
            if self.chance(0.5):
                return f"el próximo {self.pick(WEEKDAYS)}"
            unit = self.pick(("días", "semanas", "meses", "horas", "minutos"))
            gender = "f" if unit in ("semanas", "horas") else "m"
            return f"dentro de {number_words(self.r.choice((2, 3, 5, 10, 15)), gender)} {unit}"
        if tense == "pres" and roll < 0.2:
            if self.chance(0.6):
                return f"los {plural(self.pick(WEEKDAYS))}"
            return f"en {self.pick(SEASONS)}"
        return self.pick(_TIME[tense])

    def verb_phrase(
        self, inf: str, tense: str, person: int, clitic: str = "", neg: bool = False
    ) -> str:
        words = []
        if neg:
            words.append("todavía no" if tense == "perf" and self.chance(0.4) else "no")
        if clitic:
            words.append(clitic)
        words.append(conjugate(inf, tense, person))
        return " ".join(words)

    def place(self, tags: str, cities: bool) -> str:
        """A place complement: a city or country (no article), or a noun phrase."""
        if cities and (not tags or self.chance(0.4)):
            return self.pick(CITIES) if self.chance(0.7) else self.pick(COUNTRIES)
        dets = ("el", "el", "el", "un", "este", "ese", "mi", "nuestro")
        return self.noun_phrase(tags, dets=dets, is_plural=False).text

    def with_time(self, core: str, tense: str, p: float = 0.55) -> str:
        """Adds a time expression (front or back) with probability p."""
        if not self.chance(p):
            return core
        t = self.time_for(tense)
        if self.chance(0.5):
            return f"{t}{',' if self.chance(0.3) else ''} {core}"
        return f"{core} {t}"

    def object_phrase(self, tags: str) -> str:
        """The object of a verb, with the personal "a" before people and owned pets."""
        tag = self.pick(tags.split())
        if tag == "person":
            return "a " + self.person_phrase().text
        if tag == "pet":
            p = self.noun_phrase("pet", dets=("mi", "tu", "su", "nuestro", "el"), adj_p=0.2)
            return "a " + p.text
        if tag in ("massfood", "drink") and self.chance(0.4):
            noun = self.r.choice(nouns_with(tag))
            if noun.mass:
                much = "mucho" if noun.gender == "m" else "mucha"
                quantity = self.pick(("", "", "un poco de", much))
                if tag == "drink" and self.chance(0.3):
                    quantity = self.pick(("un vaso de", "una taza de", "una botella de"))
                return f"{quantity} {noun.word}"
        return self.noun_phrase(tag).text

    def job(self, who: Phrase) -> str:
        masc, fem = self.r.choice(_JOBS)
        word = fem if who.gender == "f" else masc
        return plural(word) if who.plural else word

    def hobby(self) -> str:
        kind = self.r.randrange(9)
        if kind == 0:
            return "leer " + self.noun_phrase("read", dets=("el",), is_plural=True).text
        if kind == 1:
            np_ = self.noun_phrase("instrument", dets=("el",), is_plural=False, adj_p=0.0)
            return "tocar " + np_.text
        if kind == 2:
            return f"jugar al {self.pick(_SPORTS)}"
        if kind == 3:
            return self.pick(_HOBBY_VERBS)
        if kind == 4:
            return f"ver {self.pick(_SHOWS)}"
        if kind == 5:
            return f"hablar {self.pick(LANGUAGES)}"
        if kind == 6:
            np_ = self.noun_phrase("walk", dets=("el",), is_plural=False, adj_p=0.0, owner_p=0.0)
            return f"pasear por {np_.text}"
        if kind == 7:
            return f"viajar a {self.pick(COUNTRIES)}"
        return f"ir {self.pick(_OUTINGS)}"

    def clock(self) -> tuple[str, int]:
        """("las ocho y media", 8)"""
        hour = self.r.randint(1, 12)
        minutes = self.pick(
            (
                "",
                "y cuarto",
                "y media",
                "menos cuarto",
                "y diez",
                "y veinte",
                "menos cinco",
                "en punto",
                "y cinco",
                "menos veinte",
            )
        )
        if hour == 1:
            return f"la una {minutes}", hour
        return f"las {number_words(hour)} {minutes}", hour

    # -- templates --------------------------------------------------------------------------

    def action(self) -> str:
        """Subject + transitive verb + object (+ manner | place | company) (+ time)."""
        inf = self.r.choice(list(_TRANSITIVE))
        obj_tags, animal_subj = _TRANSITIVE[inf]
        surface, subj = self.subject(animals=animal_subj)
        tense = self.tense()
        words = [surface, self.verb_phrase(inf, tense, subj.person, neg=self.chance(0.15))]
        words.append(self.object_phrase(obj_tags))
        if self.chance(0.25) and inf in _MANNER_ADJUNCT:
            words.append(self.pick(_MANNER))
        elif self.chance(0.25) and inf in _PLACE_ADJUNCT and not subj.is_animal:
            words += ["en", self.place("place work room", cities=True)]
        elif self.chance(0.15) and inf in _COMPANY_ADJUNCT and not subj.is_animal:
            words += ["con", self.person_phrase().text]
        return self.with_time(" ".join(words), tense)

    def motion(self) -> str:
        """Subject + verb of place or movement + place (+ transport | company) (+ time)."""
        inf = self.r.choice(list(_MOTION))
        prep, tags, cities, animals = _MOTION[inf]
        surface, subj = self.subject(animals=animals)
        if subj.is_animal:
            cities = False
            if inf in ("vivir", "pasear", "caminar", "correr", "entrar"):
                tags = "wild"
        tense = self.tense()
        words = [surface, self.verb_phrase(inf, tense, subj.person, neg=self.chance(0.1))]
        words += [prep, self.place(tags, cities)]
        if inf in ("ir", "viajar", "volver", "venir", "llegar") and self.chance(0.35):
            words.append(self.pick(_TRANSPORT))
        elif self.chance(0.2) and not subj.is_animal:
            words += ["con", self.pick(("mi", "su", "tu")), self.pick(_COMPANIONS)]
        return self.with_time(" ".join(words), tense)

    def copula(self) -> str:
        """X es / está (muy) ADJ, with ser or estar as the adjective requires."""
        if self.chance(0.35):
            surface, subj = self.subject()
            if subj.person not in (YO, TU, NOS) and not surface:
                surface = subj.text
        else:
            tags = self.pick(
                (
                    "obj",
                    "clothes",
                    "vehicle",
                    "place",
                    "room",
                    "food",
                    "massfood",
                    "drink",
                    "read",
                    "animal",
                    "furniture",
                    "work",
                    "person",
                )
            )
            dets = ("el", "el", "este", "ese", "aquel", "mi", "tu", "su", "nuestro")
            subj = self.noun_phrase(tags, dets=dets, adj_p=0.0, owner_p=0.2)
            surface = subj.text
        adj = self.adjective_for(subj.noun)
        if adj is None:
            return self.action()
        copula = _ADJECTIVES[adj][1]
        if copula == "both":
            copula = self.pick(("ser", "estar"))
        if copula == "ser":  # inherent qualities: no "fue" and no time expression
            tense = self.r.choices(("pres", "imp", "fut"), (6, 3, 1))[0]
        else:
            tense = self.r.choices(("pres", "imp", "pret", "fut"), (6, 3, 1, 1))[0]
        neg = self.chance(0.15)
        degree = ""
        if adj not in _NO_DEGREE:
            degrees = ("muy", "demasiado", "") if neg else ("muy", "bastante", "un poco", "")
            degree = self.pick((*degrees, "demasiado", "realmente"))
        words = [surface, self.verb_phrase(copula, tense, subj.person, neg=neg)]
        words += [degree, agree(adj, subj.gender, subj.plural)]
        return self.with_time(" ".join(words), tense, p=0.3 if copula == "estar" else 0.0)

    def location(self) -> str:
        """Where things are: las llaves están debajo de la mesa."""
        thing = self.noun_phrase(
            self.pick(("obj", "clothes", "pet", "read")),
            dets=("el", "el", "mi", "tu", "su", "este"),
            adj_p=0.25,
        )
        verb_form = conjugate("estar", self.pick(("pres", "pres", "pres", "imp")), thing.person)
        if self.chance(0.2):
            return f"¿dónde {verb_form} {thing.text}?"
        where_tags = self.pick(("furniture", "room", "furniture", "vehicle"))
        prep = "en" if where_tags == "room" else self.pick(_LOCATION_PREPS)
        where = self.noun_phrase(
            where_tags,
            dets=("el", "el", "el", "mi", "tu", "su", "este", "ese"),
            is_plural=False,
            adj_p=0.2,
        )
        return f"{thing.text} {verb_form} {prep} {where.text}"

    def there_is(self) -> str:
        """hay / había + quantity + noun (+ adjective) + place."""
        tense = self.pick(("pres", "pres", "imp", "pret"))
        verb_form = {"pres": "hay", "imp": "había", "pret": "hubo"}[tense]
        tags = self.pick(("animal", "person", "obj", "food", "furniture", "vehicle", "clothes"))
        noun = self.r.choice(_countable(tags))
        where = self.place("place room work", cities=True)
        if tense == "pres" and self.chance(0.2):
            how_many = "cuántos" if noun.gender == "m" else "cuántas"
            return f"¿{how_many} {plural(noun.word)} hay en {where}?"
        is_plural = self.chance(0.75)
        if is_plural:
            det = self.r.choice(
                (
                    number_words(self.r.randint(2, 40), noun.gender),
                    number_words(self.small_number(), noun.gender),
                    determiner("mucho", noun.gender, True),
                    determiner("alguno", noun.gender, True),
                    determiner("varios", noun.gender, True),
                    "demasiados" if noun.gender == "m" else "demasiadas",
                )
            )
        else:
            det = determiner("un", noun.gender, False)
        words = [verb_form, det, noun.form(is_plural)]
        if self.chance(0.3):
            adj = self.adjective_for(noun, "ser" if "person" in noun.tags else None)
            if adj:
                words.append(agree(adj, noun.gender, is_plural))
        preps = ("en", "en", "en", "cerca de", "delante de", "detrás de")
        is_city = where in CITIES or where in COUNTRIES
        words += ["en" if is_city else self.pick(preps), where]
        if self.chance(0.15):
            return f"¿{' '.join(words)}?"
        return self.with_time(" ".join(words), tense, p=0.25)

    def liking(self) -> str:
        """gustar-type verbs: a mi hermano le gustan mucho los perros."""
        inf = self.pick(
            ("gustar", "gustar", "gustar", "encantar", "interesar", "doler", "molestar")
        )
        person = self.r.randrange(6)
        experiencer = ""
        if person in (EL, ELLOS) and self.chance(0.6):
            p = self.person_phrase()
            person = ELLOS if p.plural else EL
            experiencer = "a " + p.text
        elif self.chance(0.2):
            experiencer = "a " + _STRONG[person]
        if inf == "doler":
            thing = self.noun_phrase("body", dets=("el",), adj_p=0.0, owner_p=0.0)
        elif inf != "molestar" and self.chance(0.3):
            thing = Phrase(self.hobby())
        else:
            tags = self.pick(
                (
                    "animal",
                    "food",
                    "massfood",
                    "drink",
                    "clothes",
                    "listen",
                    "place",
                    "read",
                    "instrument",
                    "vehicle",
                )
            )
            thing = self.noun_phrase(tags, dets=("el", "el", "el", "este", "ese", "tu"))
        tense = self.r.choices(("pres", "imp", "pret"), (6, 2, 2))[0]
        form = conjugate(inf, tense, ELLOS if thing.plural else EL)
        if not experiencer and inf in ("gustar", "encantar") and self.chance(0.15):
            return f"¿{self.pick(('te', 'le', 'os', 'les'))} {form} {thing.text}?"
        neg = "no" if self.chance(0.2) else ""
        if neg:
            degrees: tuple[str, ...] = ("mucho",)
        elif inf == "doler":
            degrees = ("mucho", "bastante", "un poco")
        else:
            degrees = ("muchísimo",)
        degree = self.pick((*degrees, "mucho")) if self.chance(0.25) else ""
        core = f"{experiencer} {neg} {_DATIVE[person]} {form} {degree} {thing.text}"
        return self.with_time(core, tense, p=0.2)

    def ditransitive(self) -> str:
        """le regalé un libro a mi madre."""
        inf = self.r.choice(list(_DITRANSITIVE))
        surface, subj = self.subject()
        # not "nosotros me regalamos": the recipient is outside the subject's own group
        group = {YO: (YO, NOS), NOS: (YO, NOS), TU: (TU, VOS), VOS: (TU, VOS)}
        excluded = group.get(subj.person, (TU, VOS) if subj.text.startswith("usted") else ())
        recipient = self.r.choice([p for p in range(6) if p not in excluded and p != subj.person])
        doubled = ""
        if recipient in (EL, ELLOS) and self.chance(0.6):
            p = self.person_phrase()
            recipient = ELLOS if p.plural else EL
            doubled = "a " + p.text
        obj = self.noun_phrase(self.pick(_DITRANSITIVE[inf].split()))
        tense = self.r.choices(("pres", "pret", "fut", "perf", "ira"), (3, 5, 1, 2, 2))[0]
        neg = self.chance(0.1)
        vp = self.verb_phrase(inf, tense, subj.person, clitic=_DATIVE[recipient], neg=neg)
        core = f"{surface} {vp} {obj.text} {doubled}"
        if self.chance(0.15):
            core += f" para su {self.pick(('cumpleaños', 'santo', 'boda', 'viaje'))}"
        return self.with_time(core, tense, p=0.4)

    def numbers(self) -> str:
        """Ages, prices, quantities, distances, dates, counts and phone numbers in words."""
        kind = self.r.randrange(8)
        if kind == 0:
            who = self.person_phrase()
            verb_form = conjugate("tener", self.pick(("pres", "pres", "imp")), who.person)
            if self.chance(0.2):
                return f"¿cuántos años {verb_form} {who.text}?"
            return f"{who.text} {verb_form} {number_words(self.r.randint(2, 99), 'm')} años"
        if kind == 1:
            thing = self.noun_phrase(
                self.pick(("obj", "clothes", "food", "read", "furniture", "instrument")),
                dets=("el", "este", "ese", "aquel"),
                adj_p=0.3,
                owner_p=0.0,
            )
            verb_form = conjugate(
                "costar", self.pick(("pres", "pres", "pret", "imp")), thing.person
            )
            if self.chance(0.3):
                return f"¿cuánto {verb_form} {thing.text}?"
            price = self.r.choice(
                (self.r.randint(1, 99), self.r.randint(100, 999), self.r.randint(1, 30) * 50)
            )
            currency = self.pick(("euros", "euros", "dólares", "pesos"))
            cents = ""
            if price < 100 and self.chance(0.3):
                c = self.r.choice((10, 20, 25, 50, 75, 90, 95, 99))
                cents = f"con {number_words(c, 'm')} céntimos"
            return f"{thing.text} {verb_form} {number_words(price, 'm')} {currency} {cents}"
        if kind == 2:
            surface, subj = self.subject()
            noun = self.r.choice(nouns_with("food", "fruit"))
            tense = self.pick(("pres", "pret", "fut", "ira"))
            amount = self.pick(
                (
                    "un kilo",
                    "medio kilo",
                    "dos kilos",
                    "tres kilos",
                    "una docena",
                    "media docena",
                    "cinco kilos",
                    "un par de kilos",
                )
            )
            inf = self.pick(("comprar", "comprar", "necesitar", "pedir", "vender"))
            vp = self.verb_phrase(inf, tense, subj.person)
            return self.with_time(f"{surface} {vp} {amount} de {plural(noun.word)}", tense, p=0.3)
        if kind == 3:
            a = self.place("place", cities=True)
            b = self.pick([c for c in CITIES if c != a])
            unit = self.pick(("kilómetros", "kilómetros", "metros", "minutos", "horas"))
            n = self.r.randint(2, 12) if unit == "horas" else self.r.randint(2, 600)
            distance = number_words(n, "f" if unit == "horas" else "m")
            suffix = (
                self.pick(("a pie", "en coche", "en tren")) if unit in ("minutos", "horas") else ""
            )
            return f"{a} está a {distance} {unit} de {b} {suffix}"
        if kind == 4:
            who = self.person_phrase()
            verb_form = conjugate("nacer", "pret", who.person)
            if self.chance(0.5):
                return f"{who.text} {verb_form} en {number_words(self.r.randint(1930, 2024))}"
            day = self.r.randint(1, 31)
            day_words = "primero" if day == 1 and self.chance(0.5) else number_words(day)
            return f"{who.text} {verb_form} el {day_words} de {self.pick(MONTHS)}"
        if kind == 5:
            surface, subj = self.subject()
            noun = self.r.choice(nouns_with("kin", "pet"))
            n = self.r.randint(1, 12)
            vp = self.verb_phrase("tener", self.pick(("pres", "imp")), subj.person)
            return f"{surface} {vp} {number_words(n, noun.gender)} {noun.form(n > 1)}"
        if kind == 6:
            noun = self.r.choice(_countable("person obj animal read"))
            where = self.place("place work", cities=True)
            verb_form = self.pick(("hay", "había", "hubo"))
            count = number_words(self.r.randint(2, 500), noun.gender)
            return f"en {where} {verb_form} {count} {plural(noun.word)}"
        digits = " ".join(number_words(self.r.randint(10, 99)) for _ in range(4))
        owner = self.pick(("mi", "tu", "su", "nuestro"))
        thing = self.pick(("número de teléfono", "número de la casa", "código postal"))
        return f"{owner} {thing} es el {digits}"

    def routine(self) -> str:
        """Clock times: what time it is, timetables, daily routine."""
        roll = self.r.random()
        t, hour = self.clock()
        if roll < 0.25:
            verb_form = "es" if hour == 1 else "son"
            part = (
                self.pick(("de la mañana", "de la tarde", "de la noche"))
                if self.chance(0.4)
                else ""
            )
            if self.chance(0.3):
                return f"¿qué hora es? {verb_form} {t} {part}"
            return f"{'ya' if self.chance(0.3) else ''} {verb_form} {t} {part}"
        if roll < 0.55:
            vehicle = self.noun_phrase("wait", dets=("el",), is_plural=False, adj_p=0.0)
            inf = self.pick(("salir", "llegar"))
            where = f"para {self.pick(CITIES)}" if inf == "salir" else f"de {self.pick(CITIES)}"
            form = conjugate(inf, self.pick(("pres", "pret", "fut")), EL)
            if self.chance(0.3):
                return f"¿a qué hora {form} {vehicle.text} {where}?"
            return f"{vehicle.text} {where} {form} a {t}"
        surface, subj = self.subject()
        inf = self.pick(("levantar", "acostar", "despertar", "duchar", "ir"))
        tense = self.pick(("pres", "pres", "pret", "imp", "fut"))
        vp = self.verb_phrase(inf, tense, subj.person, clitic=_REFLEXIVE[subj.person])
        if inf == "ir":
            vp += self.pick((" a casa", " a dormir", " al trabajo"))
        return self.with_time(f"{surface} {vp} a {t}", tense, p=0.4)

    def weather(self) -> str:
        """hace calor, llovió mucho en sevilla, mañana va a nevar en la montaña."""
        tense = self.r.choices(("pres", "pret", "imp", "fut", "ira"), (4, 3, 2, 1, 2))[0]
        roll = self.r.random()
        if roll < 0.4:
            hace = {"pres": "hace", "pret": "hizo", "imp": "hacía", "fut": "hará"}
            hace["ira"] = "va a hacer"
            what = self.pick(
                ("calor", "frío", "sol", "viento", "buen tiempo", "mal tiempo", "fresco")
            )
            degree = ""
            if what in ("calor", "frío", "sol", "viento") and self.chance(0.5):
                degree = self.pick(("mucho", "bastante", "un poco de", "demasiado"))
            core = f"{hace[tense]} {degree} {what}"
        elif roll < 0.75:
            inf = self.pick(("llover", "nevar"))
            forms = {
                "pres": verb(inf).pres[EL],
                "pret": verb(inf).pret[EL],
                "imp": verb(inf).imp[EL],
                "fut": verb(inf).fut[EL],
                "ira": f"va a {inf}",
            }
            degree = ""
            if self.chance(0.5):
                degree = self.pick(("mucho", "poco", "todo el día", "sin parar", "un poco"))
            core = f"{forms[tense]} {degree}"
        else:
            estar = conjugate("estar", "fut" if tense == "ira" else tense, EL)
            sky = self.pick(("nublado", "despejado", "gris", "muy oscuro", "precioso"))
            core = f"el cielo {estar} {sky}"
        where = f"en {self.place('walk wild', cities=True)}" if self.chance(0.5) else ""
        if tense == "pres" and self.chance(0.2):
            return f"en {self.pick(SEASONS)} {core} {where}"
        if self.chance(0.15):
            return f"¿{core} {where}?"
        return self.with_time(f"{core} {where}", tense, p=0.6)

    def question(self) -> str:
        """Wh- and yes/no questions."""
        kind = self.r.randrange(11)
        tense = self.tense()
        if kind == 0:
            inf = self.r.choice(list(_MOTION))
            prep = _MOTION[inf][0]
            _, subj = self.subject()
            subj_text = subj.text if subj.person in (EL, ELLOS) else ""
            word = self.pick(("cuándo", "con quién", "por qué", "a qué hora", "cómo"))
            if self.chance(0.4):
                word = _WHERE_WORD[prep]
            return f"¿{word} {conjugate(inf, tense, subj.person)} {subj_text}?"
        if kind == 1:
            inf = self.r.choice(list(_TRANSITIVE))
            _, subj = self.subject()
            subj_text = subj.text if subj.person in (EL, ELLOS) and self.chance(0.7) else ""
            word = (
                "a quién" if "person" in _TRANSITIVE[inf][0].split() and self.chance(0.6) else "qué"
            )
            time = self.time_for(tense) if self.chance(0.5) else ""
            return f"¿{word} {conjugate(inf, tense, subj.person)} {subj_text} {time}?"
        if kind == 2:
            inf = self.r.choice(list(_TRANSITIVE))
            _, subj = self.subject()
            obj = self.object_phrase(_TRANSITIVE[inf][0])
            vp = conjugate(inf, tense, subj.person)
            if subj.person in (EL, ELLOS) and self.chance(0.5):
                return f"¿{vp} {subj.text} {obj}?"
            return f"¿{vp} {obj}?"
        if kind == 3:
            noun = self.r.choice(nouns_with("kin", "pet", "read", "instrument", "clothes"))
            if noun.word in _INVARIANT_PLURAL:
                noun = NOUNS["libro"]
            _, subj = self.subject()
            inf = self.pick(("tener", "tener", "querer", "necesitar"))
            how_many = "cuántos" if noun.gender == "m" else "cuántas"
            subj_text = subj.text if subj.person in (EL, ELLOS) else ""
            form = conjugate(inf, "pres", subj.person)
            return f"¿{how_many} {plural(noun.word)} {form} {subj_text}?"
        if kind == 4:
            who = self.person_phrase()
            adj = self.adjective_for(_PERSON_NOUN, "estar") or "cansado"
            verb_form = conjugate("estar", self.pick(("pres", "pres", "imp")), who.person)
            return f"¿por qué {verb_form} {who.text} tan {agree(adj, who.gender, who.plural)}?"
        if kind == 5:
            inf, tags = self.r.choice(_WHO_DID)
            thing = self.noun_phrase(tags, dets=("el", "mi", "tu", "este", "ese"), adj_p=0.2)
            v = verb(inf)
            vp = self.pick((f"ha {v.part}", v.pret[EL], f"va a {inf}"))
            return f"¿quién {vp} {thing.text}?"
        if kind == 6:
            if self.chance(0.6):
                who = self.person_phrase()
                return f"¿de dónde {conjugate('ser', 'pres', who.person)} {who.text}?"
            return (
                f"¿de dónde {self.pick(('eres tú', 'es usted', 'sois vosotros', 'son ustedes'))}?"
            )
        if kind == 7:
            what, gender = self.r.choice(_FAVOURITES)
            owner = determiner(self.pick(("tu", "su", "vuestro")), gender, False)
            return f"¿cuál es {owner} {what} {agree('favorito', gender, False)}?"
        if kind == 8:
            who = self.person_phrase()
            if who.plural:
                return f"¿cómo se llaman {who.text}?"
            return f"¿cómo {self.pick(('se llama', 'está'))} {who.text}?"
        if kind == 9:
            thing = self.hobby()
            if self.chance(0.5):
                clitic = self.pick(("te", "le", "os", "les"))
                return f"¿{clitic} {self.pick(('gusta', 'apetece', 'gustaría'))} {thing}?"
            when = self.pick(("conmigo", "mañana", "esta tarde", "el sábado", "con nosotros", ""))
            return f"¿{self.pick(('quieres', 'queréis', 'prefieres', 'sabes'))} {thing} {when}?"
        place = self.noun_phrase("work", dets=("el",), is_plural=False, adj_p=0.0, owner_p=0.0)
        near = agree("cercano", place.gender, False)
        return (
            f"¿{self.pick(('sabes', 'sabe usted', 'sabéis'))} dónde está {place.text} más {near}?"
        )

    def exclamation(self) -> str:
        """¡qué casa tan bonita!, ¡qué bien canta tu hermana!, ¡feliz cumpleaños, ana!"""
        kind = self.r.randrange(5)
        if kind == 0:
            tags = self.pick(("obj", "clothes", "vehicle", "animal", "place", "room", "furniture"))
            noun = self.r.choice(nouns_with(tags))
            adj = self.adjective_for(noun, "ser") or "bonito"
            is_plural = noun.word not in _INVARIANT_PLURAL and self.chance(0.25)
            intens = self.pick(("tan", "más"))
            return f"¡qué {noun.form(is_plural)} {intens} {agree(adj, noun.gender, is_plural)}!"
        if kind == 1:
            thing = self.noun_phrase(
                self.pick(("massfood", "drink", "food")),
                dets=("el", "este", "tu"),
                adj_p=0.0,
                owner_p=0.0,
            )
            adj = self.pick(("rico", "delicioso", "bueno", "caliente", "frío", "salado", "dulce"))
            form = conjugate("estar", "pres", thing.person)
            return f"¡qué {agree(adj, thing.gender, thing.plural)} {form} {thing.text}!"
        if kind == 2:
            who = self.person_phrase()
            form = conjugate(
                self.pick(_INTRANSITIVE), self.pick(("pres", "pret", "imp")), who.person
            )
            return f"¡qué bien {form} {who.text}!"
        if kind == 3:
            who = self.name()
            welcome = agree("bienvenido", who.gender, False) + " a casa"
            greeting = self.pick((*_GREETINGS, welcome))
            if self.chance(0.6):
                return f"¡{greeting}, {who.text}!"
            title = ("señor", "doctor", "profesor") if who.gender == "m" else ("señora", "doctora")
            return f"¡{greeting}, {self.pick(title)} {who.text}!"
        what = self.pick(_FEELINGS)
        if what in ("frío", "calor"):
            verb_form = "hace"
        else:
            verb_form = self.pick(("tengo", "tienes", "tenemos", "tiene"))
        return f"¡qué {what} {verb_form} {'hoy' if self.chance(0.4) else ''}!"

    def listing(self) -> str:
        """Enumerations with commas: compramos pan, queso, huevos y tomates."""
        tags = self.pick(("food", "massfood", "fruit", "clothes", "obj", "drink"))
        items = self.r.sample(nouns_with(tags), self.r.randint(3, 4))
        parts = []
        for noun in items:
            if noun.mass:
                parts.append(noun.word)
            elif noun.word in _INVARIANT_PLURAL or self.chance(0.3):
                parts.append(f"{determiner('un', noun.gender, False)} {noun.word}")
            else:
                parts.append(plural(noun.word))
        listed = ", ".join(parts[:-1]) + f" y {parts[-1]}"
        surface, subj = self.subject()
        tense = self.pick(("pres", "pret", "fut", "ira", "perf"))
        inf = self.pick(("comprar", "necesitar", "traer", "llevar", "guardar", "vender"))
        vp = self.verb_phrase(inf, tense, subj.person)
        purpose = self.pick(
            ("para la cena", "para el viaje", "para la fiesta", "para el desayuno", "para la playa")
        )
        if self.chance(0.3):
            return f"{purpose}{',' if self.chance(0.5) else ''} {surface} {vp} {listed}"
        return f"{surface} {vp} {listed}"

    def complex(self) -> str:
        """Two clauses: cuando..., si..., porque..., pero..., que..."""
        kind = self.r.randrange(5)
        _, subj = self.subject()
        surface = subj.text if subj.person in (EL, ELLOS) or self.chance(0.3) else ""
        if kind == 0:
            place = self.place("place work", cities=True)
            other = self.person_phrase()
            state = self.pick(
                ("dormido", "cansado", "enfadado", "contento", "preocupado", "ocupado", "nervioso")
            )
            first = f"cuando {surface} {conjugate('llegar', 'pret', subj.person)} a {place}"
            estaba = conjugate("estar", "imp", other.person)
            return f"{first}, {other.text} ya {estaba} {agree(state, other.gender, other.plural)}"
        if kind == 1:
            inf = self.pick(("ir", "viajar", "volver", "pasear"))
            prep, tags, _, _ = _MOTION[inf]
            where = self.place("walk", cities=False) if inf == "pasear" else self.place(tags, True)
            condition = self.pick(_CONDITIONS)
            return f"si {condition}, {surface} {conjugate(inf, 'fut', subj.person)} {prep} {where}"
        if kind == 2:
            place = self.place("work place", cities=False)
            why = self.pick(("enfermo", "cansado", "ocupado", "preocupado", "nervioso"))
            fui = conjugate("ir", "pret", subj.person)
            estaba = conjugate("estar", "imp", subj.person)
            because = f"porque {estaba} {agree(why, subj.gender, subj.plural)}"
            return f"{surface} no {fui} a {place} {because}"
        if kind == 3:
            thing = self.noun_phrase(
                self.pick(("vehicle", "obj", "clothes", "furniture", "instrument")),
                dets=("un", "el", "ese", "este"),
                adj_p=0.3,
                owner_p=0.0,
            )
            adj = self.pick(("caro", "grande", "pesado", "pequeño", "viejo", "feo"))
            quería = conjugate("querer", "imp", subj.person)
            era = conjugate("ser", "imp", thing.person)
            too = f"{self.pick(('demasiado', 'muy'))} {agree(adj, thing.gender, thing.plural)}"
            return f"{surface} {quería} comprar {thing.text}, pero {era} {too}"
        who = self.person_phrase()
        said = conjugate(
            self.pick(("decir", "contar", "escribir", "explicar")), "pret", subj.person
        )
        state = self.pick(("cerrado", "abierto", "lleno", "vacío", "tranquilo"))
        tags = "work" if state in ("cerrado", "abierto") else "place"
        what = self.noun_phrase(tags, dets=("el",), is_plural=False, adj_p=0.0, owner_p=0.0)
        estar = conjugate("estar", self.pick(("pres", "imp")), EL)
        clitic = "les" if who.plural else "le"
        that = f"que {what.text} {estar} {agree(state, what.gender, False)}"
        return f"{surface} {clitic} {said} a {who.text} {that}"

    def modal(self) -> str:
        """Verb + infinitive: quiero aprender alemán, tenemos que limpiar la cocina."""
        surface, subj = self.subject()
        tense = self.r.choices(("pres", "imp", "pret", "fut"), (6, 2, 1, 1))[0]
        roll = self.r.random()
        if roll < 0.2:
            modal = self.pick(("querer", "poder", "necesitar", "preferir", "intentar"))
            vp = self.verb_phrase(modal, tense, subj.person, neg=self.chance(0.2))
            inf = self.pick(("hablar", "aprender", "estudiar", "entender", "enseñar", "traducir"))
            return self.with_time(f"{surface} {vp} {inf} {self.pick(LANGUAGES)}", tense, p=0.4)
        if roll < 0.35:
            skill = self.pick(
                ("nadar", "conducir", "cocinar", "bailar", "leer", "escribir", "dibujar", "esquiar")
            )
            when = self.pick(("", "muy rápido", "de pequeño", "con mi padre", "en el colegio"))
            return f"{surface} {conjugate('aprender', tense, subj.person)} a {skill} {when}"
        inf = self.r.choice(list(_TRANSITIVE))
        obj = self.object_phrase(_TRANSITIVE[inf][0])
        if roll < 0.5:
            return self.with_time(
                f"{surface} {conjugate('tener', tense, subj.person)} que {inf} {obj}", tense, p=0.4
            )
        vp = self.verb_phrase(self.pick(_MODALS), tense, subj.person, neg=self.chance(0.2))
        return self.with_time(f"{surface} {vp} {inf} {obj}", tense, p=0.4)

    def command(self) -> str:
        """Imperatives (tú), whose regular form equals the third person singular present."""
        inf = self.pick(_COMMAND_VERBS)
        form = conjugate(inf, "pres", EL)
        obj = self.object_phrase(_TRANSITIVE[inf][0])
        name = self.name().text
        roll = self.r.random()
        if roll < 0.35:
            return f"por favor, {form} {obj}"
        if roll < 0.6:
            return f"{form} {obj}, {name}"
        if roll < 0.8:
            return f"¡{form} {obj} ahora mismo!"
        when = self.pick(
            ("antes de cenar", "antes de salir", "cuando puedas", "por favor", "ahora")
        )
        return f"{name}, {form} {obj} {when}"

    def identity(self) -> str:
        """Names, origins and professions."""
        roll = self.r.random()
        if roll < 0.3:
            name = self.name().text
            if self.chance(0.5):
                who = self.noun_phrase(
                    "person", dets=("mi", "tu", "su", "este", "el"), is_plural=False
                )
                name = self.pick([n for n in _NAMES if PERSON_NAMES[n] == who.gender])
                return f"{who.text} se llama {name}"
            return f"{self.pick(('hola,', 'yo', ''))} me llamo {name}"
        if roll < 0.6:
            _, subj = self.subject()
            surface = subj.text if subj.person in (EL, ELLOS) or self.chance(0.3) else ""
            origin = self.pick(CITIES) if self.chance(0.5) else self.pick(COUNTRIES)
            core = f"{surface} {conjugate('ser', self.pick(('pres', 'pres', 'imp')), subj.person)}"
            core += f" de {origin}"
            if self.chance(0.3):
                core += f" pero {conjugate('vivir', 'pres', subj.person)} en {self.pick(CITIES)}"
            return core
        who = self.person_phrase()
        verb_form = conjugate("ser", self.pick(("pres", "pres", "imp", "fut")), who.person)
        where = f"en {self.place('work', cities=True)}" if self.chance(0.4) else ""
        return f"{who.text} {verb_form} {self.job(who)} {where}"

    def activity(self) -> str:
        """Intransitive activities with manner or company: mi abuela cocina muy bien."""
        surface, subj = self.subject()
        tense = self.tense()
        inf = self.pick(_INTRANSITIVE)
        vp = self.verb_phrase(inf, tense, subj.person, neg=self.chance(0.1))
        tail = self.pick(_MANNER) if self.chance(0.5) else ""
        if not tail and self.chance(0.5):
            tail = f"con {self.person_phrase().text}"
        if inf == "hablar":
            tail = f"{self.pick(LANGUAGES)} {tail}"
        return self.with_time(f"{surface} {vp} {tail}", tense, p=0.6)


def generate_sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct Spanish sentences of 3 to 14 words, the same for the same (n, seed).

    Distinct even once accents and punctuation are stripped (see `sentence_key`).

    Prefix property: the first k sentences of `generate_sentences(n, seed)` equal
    `generate_sentences(k, seed)`, so asking for a bigger pool keeps the sentences already had.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0 (got {n})")
    grammar = _Grammar(random.Random(seed))
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could only generate {len(out)} distinct sentences of {n}")
        s = grammar.sentence()
        key = sentence_key(s)
        if key in seen or not MIN_WORDS <= len(s.split()) <= MAX_WORDS:
            continue
        seen.add(key)
        out.append(s)
    return out


def sentence_key(sentence: str) -> str:
    """What a sentence sounds like as far as transcripts go: accents, ñ/n and punctuation
    folded. Sentences are distinct under this key, so "¿hay pan?" and "hay pan" never end up
    in two different splits as the same normalised transcript."""
    decomposed = unicodedata.normalize("NFD", sentence.lower())
    letters = "".join(c for c in decomposed if c.isalnum() or c.isspace())
    return " ".join(letters.split())
