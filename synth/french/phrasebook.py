"""The generator's phrase tables: adverbials, idioms, tense weights, verb frame sets.

Data only, like the lexicon; the grammar that uses them is in phrases.py, clauses.py and
the template modules.
"""

# Pronoun forms by person: 0..5 = je tu il nous vous ils.
REFLEXIVE = ("me", "te", "se", "nous", "vous", "se")
STRESSED = ("moi", "toi", "lui", "nous", "vous", "eux")
POSSESSIVE = {  # person -> (m sg / f sg before vowel, f sg, plural)
    0: ("mon", "ma", "mes"), 1: ("ton", "ta", "tes"), 2: ("son", "sa", "ses"),
    3: ("notre", "notre", "nos"), 4: ("votre", "votre", "vos"), 5: ("leur", "leur", "leurs"),
}

TENSE_WEIGHTS = {"pres": 40, "passe": 22, "imp": 12, "fut": 10, "cond": 4, "futproche": 6,
                 "recent": 2, "pqp": 3}
# Time adverbials and the tenses they fit: P present, A passé composé, I imperfect, F future.
TIME_EXPRESSIONS = """
hier|AI ; avant-hier|A ; hier soir|AI ; hier matin|AI ; la semaine dernière|AI ;
le mois dernier|AI ; l'année dernière|AI ; l'été dernier|AI ; lundi dernier|A ;
samedi dernier|A ; autrefois|I ; à cette époque|I ; il y a longtemps|AI ; ce matin|PAF ;
tout à l'heure|AF ; la veille|AI ; récemment|A ; pendant les vacances|AIF ;
l'hiver dernier|AI ; demain|F ; après-demain|F ; demain matin|F ; demain soir|F ;
la semaine prochaine|F ; le mois prochain|F ; l'année prochaine|F ; l'été prochain|F ;
lundi prochain|F ; bientôt|F ; plus tard|F ; ce soir|PF ; cet après-midi|PAF ;
un jour|AF ; à la rentrée|F ; aujourd'hui|PAF ; maintenant|P ; en ce moment|PF ;
tous les jours|PI ; chaque matin|PI ; chaque semaine|PIF ; souvent|PI ; d'habitude|PI ;
le dimanche|PI ; le samedi matin|PI ; toute la journée|PAIF ; depuis ce matin|P ;
le soir|PI ; la nuit|PI ; en hiver|PIF ; en été|PIF ; au printemps|PIF ; en automne|PIF ;
à midi|PAIF ; vers minuit|PAIF ; lundi|PAF ; mardi|PAF ; mercredi|PAF ; jeudi|PAF ;
vendredi|PAF ; samedi|PAF ; dimanche|PAF ; en août|PAIF ; en février|PAIF ;
en décembre|PAIF ; à Noël|PAIF ; à Pâques|PAIF ; le matin|PI ; l'après-midi|PI ;
pendant la nuit|PAIF ; avant le dîner|PAF ; après le travail|PAIF ; au petit matin|PAF ;
à l'aube|PAIF ; au coucher du soleil|PAIF ; chaque été|PI ; tous les matins|PI ;
depuis toujours|P ; jadis|I ; dans la soirée|PAF ; à la fin du mois|PAF ; ce week-end|PAF
"""
TENSE_TIME_TAG = {"pres": "P", "passe": "A", "pqp": "A", "imp": "I", "fut": "F",
                  "futproche": "F", "cond": "F", "recent": "P", "subj": "P"}

MID_ADVERBS = ("souvent", "toujours", "déjà", "encore", "bien", "vraiment", "beaucoup",
               "enfin", "aussi", "vite", "rarement", "parfois")
# Adverbs that fit with être / devenir + attribute ("elle est souvent fatiguée").
MID_ADVERBS_ATTR = ("toujours", "souvent", "déjà", "encore", "vraiment", "parfois", "aussi",
                    "enfin", "rarement")
# Adverbs that may follow "ne ... pas" ("il ne mange pas beaucoup").
MID_ADVERBS_NEGATED = ("souvent", "toujours", "bien", "vraiment", "beaucoup", "trop", "vite")
# Adjectives that only work in front of a noun, never as "X est <adj>".
NOT_PREDICATIVE = frozenset({"autre", "premier", "dernier", "meilleur", "vrai", "prochain",
                             "entier", "vaste", "pareil", "unique"})
END_ADVERBS = ("lentement", "rapidement", "doucement", "facilement", "tranquillement",
               "calmement", "gentiment", "poliment", "prudemment", "attentivement",
               "simplement", "naïvement", "brièvement", "précisément", "énormément",
               "spontanément", "à haute voix", "avec soin", "en silence",
               "sans bruit", "de bon cœur", "à toute vitesse", "tout de suite",
               "volontiers", "exprès", "par hasard", "sans hésiter", "avec plaisir",
               "en courant", "à l'improviste", "de temps en temps", "au fur et à mesure",
               "là-bas", "ici", "dehors", "partout", "quelque part", "à nouveau")
DISCOURSE = ("au fait", "bien sûr", "en effet", "pourtant", "d'ailleurs", "tout à coup",
             "par conséquent", "néanmoins", "autrement dit", "heureusement",
             "malheureusement", "selon moi", "à mon avis", "en fait", "franchement",
             "évidemment", "au contraire", "après tout", "du coup", "enfin", "ensuite",
             "d'abord", "finalement", "soudain", "cependant", "toutefois", "de plus",
             "en revanche", "entre nous", "sans doute", "à vrai dire", "honnêtement",
             "bref", "ainsi", "oui", "non", "eh bien", "ah", "oh", "hélas", "voilà",
             "à propos", "d'après moi", "de toute façon", "quant à moi",
             "de mon côté", "au fond")
GAMES = ("au football", "aux cartes", "aux échecs", "au tennis", "au basket", "au rugby",
         "à cache-cache", "aux dames", "à la marelle", "au ping-pong", "aux billes",
         "au ballon", "à la poupée", "aux jeux vidéo", "au volley", "au golf")
AVOIR_IDIOMS = ("faim", "soif", "sommeil", "froid", "chaud", "raison", "tort",
                "de la chance", "mal à la tête", "mal au dos", "mal aux dents",
                "besoin de repos", "envie de dormir", "peur du noir", "hâte de partir",
                "l'habitude de travailler tard", "le temps de lire", "du mal à comprendre",
                "rendez-vous chez le dentiste", "les yeux fermés", "beaucoup de travail",
                "confiance en l'avenir", "de la fièvre", "le cœur gros")
FAIRE_IDIOMS = ("la cuisine", "la vaisselle", "les courses", "du sport", "du vélo",
                "une promenade", "la sieste", "attention", "de son mieux", "ses devoirs",
                "le ménage", "la queue", "du bruit", "un effort", "une pause",
                "un gâteau au chocolat", "une erreur", "la fête", "du ski",
                "la connaissance de ses voisins", "le tour du lac", "un pique-nique",
                "un vœu", "la grasse matinée", "des économies", "un détour")
ETRE_STATES = ("en retard", "à l'heure", "d'accord", "en vacances", "au courant",
               "de bonne humeur", "de mauvaise humeur", "en forme", "en colère",
               "à bout de souffle", "sur le point de partir", "prêt à partir",
               "au chômage", "en avance", "en bonne santé", "à la retraite")
SPEECH_VERBS = (  # passé simple / present forms for "« ... », dit-il"
    ("dit", "dit"), ("répondit", "répond"), ("ajouta", "ajoute"), ("expliqua", "explique"),
    ("murmura", "murmure"), ("cria", "crie"), ("annonça", "annonce"), ("soupira", "soupire"),
    ("déclara", "déclare"), ("répéta", "répète"), ("lança", "lance"), ("s'écria", "s'écrie"),
    ("affirma", "affirme"), ("conclut", "conclut"),
)
QUESTION_SPEECH = (("demanda", "demande"), ("s'étonna", "s'étonne"), ("insista", "insiste"))
MONTHS = ("janvier février mars avril mai juin juillet août septembre octobre novembre "
          "décembre").split()
MONUMENTS = (("l'église", "f"), ("le château", "m"), ("la cathédrale", "f"), ("le pont", "m"),
             ("l'abbaye", "f"), ("la tour", "f"), ("le moulin", "m"), ("la chapelle", "f"),
             ("le phare", "m"), ("l'hôtel de ville", "m"), ("la mairie", "f"),
             ("le théâtre", "m"), ("la gare", "f"), ("le musée", "m"))
PLACE_PHRASES = ("à la campagne", "à la montagne", "en ville", "au centre-ville",
                 "au bord de la mer", "au bord du lac", "près de la gare", "loin d'ici",
                 "en face de l'église", "à côté du stade", "derrière la maison",
                 "devant le musée", "au milieu de la forêt", "au coin de la rue",
                 "au fond du jardin", "au-dessus du village", "le long du canal",
                 "à travers la forêt", "sous les arbres", "sur la place du marché",
                 "au sommet de la colline", "à l'étranger", "dans le quartier",
                 "de l'autre côté de la rivière", "au rez-de-chaussée", "au premier étage",
                 "au sous-sol", "là-haut", "jusqu'au bout du chemin", "vers le nord",
                 "vers l'ouest", "en pleine nature", "au bord de la route")

# Verbs a clause may not start from in certain roles.
NO_IMPERATIVE = frozenset({"pouvoir", "vouloir", "devoir", "savoir", "naître", "mourir",
                           "plaire", "sembler", "durer", "apparaître", "disparaître",
                           "fleurir", "avoir", "grandir", "vieillir", "refroidir"})
CLAUSE_FRAMES = frozenset({"que", "qs", "si"})
INF_FRAMES = frozenset({"inf", "inf:à", "inf:de"})
VERB_WEIGHTS = {"être": 6, "avoir": 5, "aller": 4, "faire": 4, "pouvoir": 3, "vouloir": 3,
                "devoir": 2, "prendre": 2, "voir": 2, "venir": 2, "dire": 2, "savoir": 2,
                "parler": 2, "aimer": 2, "manger": 2, "trouver": 2, "donner": 2,
                "mettre": 1.5, "penser": 1.5, "partir": 1.5, "lire": 1.5, "écrire": 1.5,
                "acheter": 1.5, "chercher": 1.5, "regarder": 1.5, "attendre": 1.5}


def _parse_times() -> tuple[tuple[str, str], ...]:
    out = []
    for entry in TIME_EXPRESSIONS.replace("\n", " ").split(";"):
        if entry.strip():
            text, tags = entry.strip().split("|")
            out.append((text, tags))
    return tuple(out)


TIMES = _parse_times()  # (adverbial, tense tags)
