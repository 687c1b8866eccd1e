"""Hand-written French lexicon: the data blocks, nothing else.

    nouns        singular/plural, gender, a semantic class (person, food, place...)
    adjectives   four agreed forms (+ the masculine form used before a vowel: bel, vieil)
    verbs        pattern or irregular model, auxiliary, the complement frames they take
    names        first names (with gender), surnames, cities, countries, regions, rivers

Plain text parsed once by `words.lexicon()` (cached); the conjugation rules that expand
the verb lines live in `conjugation.py`, number spelling in `numbers.py`.
"""

VOWEL_LETTERS = frozenset("aeiouéèêëàâîïôûùüœæ")

# Words that start with an "h aspiré" (no elision: "le héros", "la hache") and numbers
# that behave the same way ("le huit mars", "le onze novembre").
ASPIRATED = frozenset("""
héros hache haricot haricots hibou hiboux hasard honte harpe harpes hangar hangars hérisson
hérissons haut haute hauts hautes hall halls huit huitième onze onzième hamac hamacs
homard homards hutte huttes hâte
""".split())

# --------------------------------------------------------------------------------------
# Nouns: "[class]" headers, then comma-separated entries "word[/plural] gender [mass]".
# Underscores stand for spaces inside a multi-word noun. Regular plurals are derived.
# --------------------------------------------------------------------------------------

NOUN_DATA = """
[person]
homme m, femme f, enfant m, garçon m, fille f, ami m, amie f, voisin m, voisine f,
frère m, sœur f, père m, mère f, oncle m, tante f, cousin m, cousine f,
grand-père/grands-pères m, grand-mère/grands-mères f, fils/fils m, petit-fils/petits-fils m,
petite-fille/petites-filles f, beau-frère/beaux-frères m, belle-sœur/belles-sœurs f,
bébé m, élève m, étudiant m, étudiante f, professeur m, institutrice f, instituteur m,
médecin m, infirmier m, infirmière f, boulanger m, boulangère f, boucher m, pharmacien m,
pharmacienne f, facteur m, factrice f, policier m, pompier m, agriculteur m, agricultrice f,
chanteur m, chanteuse f, acteur m, actrice f, musicien m, musicienne f, peintre m,
écrivain m, journaliste m, avocat m, avocate f, juge m, maire m, ministre m, président m,
présidente f, directeur m, directrice f, vendeur m, vendeuse f, serveur m, serveuse f,
cuisinier m, cuisinière f, chauffeur m, pilote m, capitaine m, marin m, soldat m,
ingénieur m, architecte m, coiffeur m, coiffeuse f, dentiste m, touriste m, voyageur m,
voyageuse f, passager m, passagère f, client m, cliente f, patron m, patronne f,
collègue m, chef m, roi m, reine f, prince m, princesse f, héros/héros m, héroïne f,
gardien m, gardienne f, paysan m, paysanne f, pêcheur m, chasseur m, sorcière f,
fermier m, fermière f, habitant m, habitante f, citoyen m, citoyenne f, député m,
sénateur m, maître m, maîtresse f, voleur m, voleuse f, inconnu m, inconnue f,
vieillard m, bibliothécaire m, électricien m, plombier m, mécanicien m, astronaute m,
chercheur m, chercheuse f, photographe m, danseur m, danseuse f, joueur m, joueuse f,
entraîneur m, arbitre m, champion m, championne f, spectateur m, spectatrice f,
lecteur m, lectrice f, auteur m, traducteur m, traductrice f, guide m, berger m,
bergère f, marchand m, marchande f, épicier m, épicière f, fleuriste m, banquier m,
comptable m, secrétaire f, stagiaire m, bénévole m, retraité m, retraitée f, jumeau/jumeaux m,
jumelle f, fiancé m, fiancée f, mari m, épouse f, camarade m, adolescent m, adolescente f

[animal]
chat m, chatte f, chien m, chienne f, cheval/chevaux m, vache f, cochon m, mouton m,
chèvre f, lapin m, oiseau m, poule f, coq m, canard m, souris/souris f, renard m, loup m,
ours/ours m, lion m, tigre m, éléphant m, singe m, girafe f, serpent m, grenouille f,
abeille f, papillon m, fourmi f, araignée f, mouche f, escargot m, hibou/hiboux m,
hérisson m, écureuil m, baleine f, dauphin m, tortue f, âne m, biche f, cerf m, aigle m,
corbeau m, pigeon m, moustique m, requin m, crabe m, perroquet m, chameau m, zèbre m,
kangourou m, pingouin m, phoque m, taureau m, veau m, agneau m, poussin m, cygne m,
hirondelle f, merle m, rossignol m, chouette f, castor m, blaireau m, sanglier m

[food]
pain m mass, pomme f, poire f, banane f, orange f, fraise f, cerise f, raisin m, pêche f,
abricot m, citron m, tomate f, carotte f, salade f mass, pomme_de_terre/pommes_de_terre f,
haricot m, chou/choux m, chou-fleur/choux-fleurs m, oignon m, champignon m, gâteau m,
tarte f, croissant m, biscuit m, chocolat m mass, fromage m mass, beurre m mass, œuf m,
yaourt m, jambon m mass, poulet m mass, viande f mass, soupe f mass, riz/riz m mass,
crêpe f, omelette f, sandwich/sandwichs m, pizza f, confiture f mass, miel m mass,
sucre m mass, sel m mass, poivre m mass, noix/noix f, noisette f, amande f, figue f,
prune f, melon m, pastèque f, ananas/ananas m, maïs/maïs m mass, brioche f, baguette f,
quiche f, ratatouille f mass, steak m, saucisse f, huître f, crevette f, légume m, fruit m,
bonbon m, glace f mass, tartine f, galette f, gaufre f, radis/radis m, courgette f,
aubergine f, poivron m, concombre m, épinard m, lentille f, olive f, framboise f,
myrtille f, clémentine f, mangue f, noix_de_coco/noix_de_coco f, petit_pain/petits_pains m

[drink]
eau/eaux f mass, lait m mass, café m mass, thé m mass, jus/jus m mass, vin m mass,
bière f mass, limonade f mass, sirop m mass, cidre m mass, chocolat_chaud m mass,
jus_d'orange/jus_d'orange m mass, tisane f mass, soda m mass

[object]
table f, chaise f, lit m, lampe f, clé f, téléphone m, ordinateur m, stylo m, crayon m,
cahier m, sac m, valise f, boîte f, bouteille f, verre m, tasse f, assiette f,
couteau m, fourchette f, cuillère f, casserole f, poêle f, bol m, miroir m, horloge f,
montre f, parapluie m, ballon m, jouet m, poupée f, bougie f, panier m, seau m,
échelle f, marteau m, clou m, corde f, photo f, tableau m, cadeau m, portefeuille m,
porte-monnaie/porte-monnaie m, tire-bouchon/tire-bouchons m, abat-jour/abat-jour m,
coussin m, tapis/tapis m, rideau m, fenêtre f, porte f, armoire f, frigo m, four m,
radio f, télévision f, appareil_photo/appareils_photo m, peigne m, brosse f, savon m,
serviette f, drap m, couverture f, oreiller m, ampoule f, pile f, câble m, écran m,
clavier m, bijou/bijoux m, bague f, collier m, médaille f, trophée m, drapeau m,
cerf-volant/cerfs-volants m, balai m, éponge f, enveloppe f, timbre m, billet m, pièce f,
coffre m, cadenas/cadenas m, outil m, pinceau m, vase m, pot m, cafetière f, théière f,
bouilloire f, hache f, canapé m, fauteuil m, étagère f, tiroir m, boussole f, lanterne f,
sifflet m, globe m, ciseau m, aiguille f, bouton m, ruban m, mouchoir m, carton m

[clothing]
chemise f, robe f, pantalon m, jupe f, manteau m, veste f, pull m, chapeau m, casquette f,
écharpe f, gant m, chaussure f, botte f, chaussette f, ceinture f, cravate f, blouson m,
imperméable m, maillot m, short m, tablier m, bonnet m, costume m, uniforme m, sandale f,
pyjama m, gilet m

[vehicle]
voiture f, vélo m, bus/bus m, train m, avion m, bateau m, camion m, moto f, métro m,
tramway m, taxi m, navire m, hélicoptère m, fusée f, trottinette f, tracteur m,
ambulance f, voilier m, péniche f, autobus/autobus m, camionnette f, barque f, canoë m

[text]
livre m, lettre f, journal/journaux m, magazine m, roman m, poème m, article m, message m,
histoire f, conte m, recette f, carte_postale/cartes_postales f, rapport m, dossier m,
document m, courriel m, chapitre m, dictionnaire m, page f, chanson f, note f, liste f,
affiche f, contrat m, menu m, plan m, carte f, leçon f, exercice m, texte m, récit m,
témoignage m, mot m, phrase f, questionnaire m, bande_dessinée/bandes_dessinées f,
encyclopédie f, manuel m, brochure f, formulaire m, annonce f, légende f, fable f

[place]
maison f, école f, église f, gare f, marché m, magasin m, boulangerie f, pharmacie f,
bibliothèque f, musée m, théâtre m, cinéma m, hôpital/hôpitaux m, hôtel m, restaurant m,
parc m, jardin m, cuisine f, salon m, chambre f, bureau/bureaux m, usine f, ferme f,
château m, mairie f, banque f, poste f, piscine f, stade m, plage f, port m, aéroport m,
village m, ville f, quartier m, rue f, place f, pont m, tour f, immeuble m, appartement m,
grenier m, cave f, garage m, couloir m, escalier m, cour f, salle f, épicerie f,
librairie f, boucherie f, université f, lycée m, collège m, laboratoire m, atelier m,
hangar m, cathédrale f, abbaye f, chapelle f, auberge f, refuge m, phare m, moulin m,
cabane f, grange f, prison f, tribunal/tribunaux m, palais/palais m, caserne f, zoo m,
supermarché m, capharnaüm m, commissariat m, boutique f, terrasse f, balcon m,
jardin_public/jardins_publics m,
salle_de_bains/salles_de_bains f, vestiaire m, serre f, marina f, crèche f

[plant]
arbre m, fleur f, rose f, herbe f mass, feuille f, branche f, buisson m, chêne m, sapin m,
tulipe f, marguerite f, lilas/lilas m, muguet m, violette f, coquelicot m, tournesol m,
rosier m, pommier m, cerisier m, olivier m, fougère f, lierre m

[nature]
forêt f, montagne f,
colline f, vallée f, rivière f, fleuve m, lac m, mer f, océan m, île f, ciel/cieux m,
soleil m, lune f, étoile f, nuage m, pluie f mass, neige f mass, vent m, orage m,
tempête f, arc-en-ciel/arcs-en-ciel m, pierre f, rocher m, sable m mass, champ m,
prairie f, chemin m, sentier m, route f, cascade f, source f, volcan m, désert m,
glacier m, grotte f, falaise f, étang m, ruisseau m, horizon m, brouillard m, terre f,
planète f, paysage m, bois/bois m, coquillage m, vague f, caillou/cailloux m, récif m, dune f

[abstract]
idée f, question f, problème m, réponse f, solution f, projet m, décision f, rêve m,
souvenir m, secret m, raison f, erreur f, chance f, vérité f, mensonge m, promesse f,
conseil m, avis/avis m, opinion f, espoir m, peur f, joie f, colère f, tristesse f,
silence m, bruit m, travail/travaux m, voyage m, fête f, anniversaire m, mariage m,
réunion f, voix/voix f, concert m, spectacle m, match/matchs m, film m, jeu/jeux m, cours/cours m,
examen m, concours/concours m, loi f, règle f, prix/prix m, budget m, accord m, débat m,
amendement m, réforme f, élection f, économie f, culture f, santé f, liberté f, paix f,
guerre f, avenir m, passé m, musique f, science f, langue f, nouvelle f, surprise f,
aventure f, habitude f, expérience f, méthode f, occasion f, difficulté f,
succès/succès m, échec m, effort m, courage m, patience f, mémoire f, énergie f,
qualité f, situation f, proposition f, hypothèse f, théorie f, découverte f,
invention f, œuvre f, chef-d'œuvre/chefs-d'œuvre m, vœu/vœux m, manœuvre f, hasard m,
honte f, rendez-vous/rendez-vous m, émission f, programme m, exposition f, recherche f,
commission f, séance f, article_de_loi/articles_de_loi m, mesure f, enquête f
, crise f, victoire f, défaite f, récompense f, chose f

[time]
jour m, semaine f, mois/mois m, année f, matin m, soir m, soirée f, nuit f, journée f,
après-midi/après-midi m, week-end/week-ends m, heure f, minute f, siècle m, saison f,
printemps/printemps m, été m, automne m, hiver m, moment m, instant m, époque f,
matinée f, veille f, lendemain m

[body]
tête f, main f, bras/bras m, jambe f, pied m, œil/yeux m, oreille f, nez/nez m,
bouche f, dent f, cheveu/cheveux m, dos/dos m, cœur m, ventre m, épaule f,
genou/genoux m, doigt m, visage m, cou m, front m, gorge f, ongle m, joue f

[instrument]
piano m, guitare f, violon m, flûte f, trompette f, batterie f, harpe f, accordéon m,
violoncelle m, saxophone m, tambour m, clarinette f, harmonica m, orgue m
"""

# Adjectives: "forms position groups". forms = m | m,f | m,f,mpl,fpl | m,f,mpl,fpl,m-before-vowel
# (missing forms are derived). Groups name the noun classes an adjective may describe.
ADJ_GROUPS = {
    "animate": ("person", "animal"),
    "person": ("person",),
    "animal": ("animal",),
    "thing": ("object", "clothing", "vehicle", "instrument"),
    "object": ("object",),
    "clothing": ("clothing",),
    "vehicle": ("vehicle",),
    "instrument": ("instrument",),
    "text": ("text",),
    "place": ("place",),
    "food": ("food",),
    "drink": ("drink",),
    "nature": ("nature", "plant"),
    "abstract": ("abstract",),
    "time": ("time",),
    "body": ("body",),
}

ADJ_DATA = """
petit pre animate|thing|place|food|nature|body|text
grand pre animate|thing|place|nature|abstract
beau,belle,beaux,belles,bel pre animate|thing|place|nature|time|body
joli pre person|animal|thing|place|nature
bon,bonne pre food|drink|abstract|person|time|text
mauvais pre food|drink|abstract|time|text
jeune pre animate
vieux,vieille,vieux,vieilles,vieil pre animate|thing|place|text
nouveau,nouvelle,nouveaux,nouvelles,nouvel pre thing|place|abstract|person|text
gros,grosse pre animate|thing|food|abstract
long,longue pre text|time|nature|abstract
premier,première pre text|time|abstract
dernier,dernière pre text|time|abstract
vaste pre place|nature
excellent pre food|drink|abstract|person|text
meilleur pre person|abstract|food|text
vrai pre abstract|person
autre pre animate|thing|place|food|nature|abstract|time|text
rouge post thing|nature|food|clothing
bleu post thing|nature|clothing|body
vert post thing|nature|food|clothing
jaune post thing|nature|food|clothing
noir post thing|animal|nature|clothing|body
blanc,blanche post thing|animal|nature|clothing|food
gris,grise post thing|animal|nature|clothing|body
violet,violette post thing|nature|clothing
rose post thing|nature|clothing
orange,orange,orange,orange post thing|clothing
marron,marron,marron,marron post thing|animal|clothing|body
brun post animal|clothing|body|nature
roux,rousse post person|animal
doré post thing|nature|food
argenté post thing|clothing
beige post thing|clothing
heureux post animate|time
triste post animate|text|time|abstract
fatigué post animate|body
content post animate
malade post animate
calme post animate|place|nature|time
sérieux post person|abstract
généreux post person
curieux post animate|abstract
drôle post person|text|abstract|animal
gentil,gentille post animate
sympathique post person|place
célèbre post person|place|text|abstract
naïf post person
actif post person
sportif post person
timide post animate
courageux post person
patient post person
poli post person
prudent post person
inquiet,inquiète post animate
fier,fière post animate
honnête post person
intelligent post animate|abstract
bavard post person|animal
jaloux,jalouse post person
paresseux post animate
joyeux post animate|time|abstract
nerveux post animate
sage post person|abstract
charmant post person|place
têtu post animate
élégant post person|clothing|place
étranger,étrangère post person|text|abstract
surpris post person
déçu post person
ému post person
épuisé post animate
pressé post person
occupé post person|place
perdu post animate|object
âgé post animate
affamé post animate
endormi post animate|place
blessé post animate|body
mignon,mignonne post animal|person
fidèle post animate
sauvage post animal|nature|place
égoïste post person
ambitieux post person|abstract
silencieux post animate|place|nature
discret,discrète post person|place
franc,franche post person
cruel post person|abstract
doux,douce,doux,douces post animate|food|clothing|nature|body
gourmand post animate
maladroit post person
distrait post person
attentif post person
créatif post person|abstract
optimiste post person
enthousiaste post person
cassé post object|vehicle|instrument
propre post thing|place|body|clothing
sale post thing|place|body|clothing
neuf,neuve post thing|clothing
lourd post thing
léger,légère post thing|food|clothing|nature
cher,chère post thing|food|clothing|place
ancien,ancienne post thing|place|text|abstract
moderne post thing|place|abstract
fragile post object|animate
solide post object|vehicle|abstract
utile post thing|text|abstract
inutile post thing|text|abstract
étroit post place|nature|clothing
large post place|nature|clothing
épais,épaisse post text|object|nature|food
mince post person|text|object
rond post object|food|body
carré post object|place
pratique post object|clothing|abstract
précieux post object|abstract|text
brillant post person|object|abstract|nature
rare post object|animal|abstract|text
vide post thing|place
plein post thing|place
ouvert post object|place
fermé post object|place
mouillé post thing|animal|clothing|body
sec,sèche post thing|food|nature|body
chaud post food|drink|clothing|place|nature|time
froid post food|drink|place|nature|time|body
bizarre post animate|thing|abstract|food|text
étrange post animate|thing|abstract|place|text
original,originale,originaux,originales post thing|abstract|text|person
unique post thing|abstract|place|text
coloré post thing|clothing|nature
rayé post clothing|object|animal
usé post clothing|object
démodé post clothing|object
confortable post object|clothing|vehicle|place
délicieux post food|drink
sucré post food|drink
salé post food|drink
amer,amère post food|drink
frais,fraîche,frais,fraîches post food|drink|nature|time
mûr post food
cuit post food
cru post food
épicé post food
savoureux post food
croustillant post food
tendre post food|person|animal
glacé post drink|food|nature
fort post drink|person|animal
bruyant post place|animate|vehicle
sombre post place|nature|clothing
lumineux post place|nature|abstract
tranquille post place|nature|time|person
animé post place|abstract
désert post place|nature
accueillant post place|person
historique post place|abstract|text
public,publique post place|abstract
national,nationale,nationaux,nationales post place|abstract
municipal,municipale,municipaux,municipales post place
magnifique post place|nature|thing|time|person|animal
pittoresque post place|nature
immense post place|nature|abstract
profond post nature|abstract
clair post nature|abstract|place|text
paisible post place|nature|time|animate
enneigé post nature|place
fleuri post nature|place
intéressant post abstract|text|person|place
important post abstract|text|person
difficile post abstract|text|time|person
facile post abstract|text
simple post abstract|text|object|person
compliqué post abstract|text|object
possible post abstract
impossible post abstract|person
nécessaire post abstract|object
dangereux post abstract|animal|place|nature
grave post abstract
urgent post abstract|text
secret,secrète post abstract|text|place
complet,complète post abstract|text|place
ambigu,ambiguë,ambigus,ambiguës post abstract|text
aigu,aiguë,aigus,aiguës post body|abstract
général,générale,généraux,générales post abstract
spécial,spéciale,spéciaux,spéciales post abstract|food|text
principal,principale,principaux,principales post abstract|place|person
normal,normale,normaux,normales post abstract|person|time
idéal,idéale,idéaux,idéales post abstract|place|time|person
banal,banale,banals,banales post abstract|text
précis post abstract|text
parfait post abstract|food|person|time
génial,géniale,géniaux,géniales post abstract|person
formidable post abstract|person|time
incroyable post abstract|text|person|place
passionnant post abstract|text|person
ennuyeux post abstract|text|person|time
remarquable post abstract|text|person|place
étonnant post abstract|text
pareil,pareille post abstract|thing
positif post abstract|person
négatif post abstract
juste post abstract|person
fou,folle,fous,folles,fol post person|abstract
prochain post time
entier,entière post time|food|object
agréable post time|place|person|abstract
pluvieux post time
ensoleillé post time|place
court post text|time|clothing|abstract
"""

# Verbs: "infinitive pattern aux subject | frames".
#   pattern: er (parler), ir (finir), re (attendre), or the infinitive of an irregular
#            model in IRREGULAR (prefix families: "devenir venir" conjugates like venir).
#   aux: a (avoir) or e (être); subject: p (person) or a (any animate).
#   frames, space-separated:
#     i                 no complement           o:CLASS+CLASS   direct object
#     p:PREP:CLASS      prepositional object    oi:CLASS:PREP:CLASS  object + indirect
#     loc / src         place where (or to) / place from
#     inf inf:à inf:de  infinitive complement   que qs si       clause (indicative,
#                                                               subjunctive, whether)
#     attr              adjective or profession attribute
VERB_DATA = """
parler er a p | i p:à:person p:de:abstract+person+text p:avec:person
manger er a a | i o:food
chanter er a a | i o:text
danser er a p | i p:avec:person
jouer er a a | i game instr p:avec:person
travailler er a p | i loc p:avec:person p:sur:abstract+text
marcher er a a | i loc
regarder er a a | o:person+animal+object+nature+vehicle+place o:abstract
écouter er a a | o:person+text+abstract o:instrument
aimer er a a | o:person+animal+food+place+nature+abstract inf
adorer er a a | o:person+animal+food+place+nature inf
détester er a a | o:food+animal+abstract+place inf
préférer er a a | o:food+drink+place+abstract inf qs
chercher er a a | o:person+animal+object+place+text+abstract
trouver er a a | o:object+text+animal+abstract+place
donner er a p | oi:object+food+text:à:person oi:abstract:à:person
porter er a p | o:clothing+object
apporter er a p | o:food+drink+object+text oi:food+object+text:à:person
acheter er a p | o:food+drink+object+clothing+vehicle+text oi:object+food:à:person
payer er a p | o:object+food+abstract
essayer er a p | o:clothing+food+vehicle inf:de
envoyer er a p | o:text oi:text+object:à:person
nettoyer er a p | o:place+object+vehicle+clothing
laver er a p | o:vehicle+clothing+object+body
ranger er a p | o:place+object+clothing
préparer er a p | o:food+abstract+text
cuisiner er a p | i o:food
goûter er a a | o:food+drink
commander er a p | o:food+drink+object
demander er a p | oi:object+text+abstract:à:person si
expliquer er a p | oi:abstract+text:à:person que
raconter er a p | oi:text+abstract:à:person
montrer er a p | oi:object+text+place:à:person
présenter er a p | oi:person+text+abstract:à:person
inviter er a p | o:person
appeler er a p | o:person+animal
téléphoner er a p | p:à:person
penser er a p | p:à:person+abstract que
rêver er a a | i p:de:abstract+place
espérer er a p | que inf
oublier er a p | o:object+text+abstract inf:de que
étudier er a p | o:abstract+text i
enseigner er a p | oi:abstract:à:person
dessiner er a p | o:animal+object+nature+plant+place
visiter er a p | o:place
habiter er a p | loc
rester er e a | loc attr
arriver er e a | loc i
entrer er e a | loc
rentrer er e a | loc i
tomber er e a | i
monter er e a | loc
retourner er e a | loc
passer er a p | o:time
quitter er a a | o:place+person
traverser er a a | o:place+nature
voyager er a p | i loc
nager er a a | i loc
sauter er a a | i
grimper er a a | loc
pleurer er a a | i
crier er a a | i
allumer er a p | o:object
fermer er a p | o:object+place
garder er a a | o:object+animal+abstract
cacher er a a | o:object+food+abstract
laisser er a p | o:object+text+animal
lancer er a p | o:object
attraper er a a | o:object+animal
pousser er a a | o:object+vehicle
tirer er a a | o:object
tourner er a p | o:text
continuer er a p | o:abstract+text inf:à
commencer er a p | o:abstract+text inf:à
terminer er a p | o:abstract+text+food
gagner er a p | o:abstract i
compter er a p | o:object+animal+food
lever er a p | o:body
emmener er a p | o:person+animal
promener er a p | o:animal
jeter er a p | o:object+food+text
répéter er a p | o:text+abstract
fêter er a p | o:abstract+time
organiser er a p | o:abstract
annoncer er a p | oi:abstract:à:person que
remercier er a p | o:person
aider er a p | o:person
soigner er a p | o:person+animal
sauver er a p | o:person+animal
réparer er a p | o:object+vehicle+instrument
créer er a p | o:abstract+text+object
inventer er a p | o:abstract+text+object
imaginer er a p | o:abstract+place que
décorer er a p | o:place+object
planter er a p | o:plant+food
arroser er a p | o:plant+place
couper er a p | o:food+object+plant
copier er a p | o:text
signer er a p | o:text
noter er a p | o:text+abstract
photographier er a p | o:person+animal+place+nature+plant
toucher er a a | o:object+animal+body
casser er a a | o:object
remplir ir a p | o:object+text
refroidir ir a p | i
verser er a p | o:drink
mélanger er a p | o:food
accepter er a p | o:abstract+text inf:de
refuser er a p | o:abstract+text+food inf:de
proposer er a p | oi:abstract+food:à:person
discuter er a p | p:de:abstract+text p:avec:person
voter er a p | p:pour:abstract+person p:contre:abstract
adopter er a p | o:abstract+animal
examiner er a p | o:abstract+text+person+animal
observer er a a | o:animal+nature+person+place
remarquer er a p | o:abstract+person que
deviner er a p | o:abstract que
partager er a p | o:food+abstract+object
prêter er a p | oi:object+text+vehicle:à:person
emprunter er a p | o:object+text+vehicle
rembourser er a p | o:person
dépenser er a p | i
louer er a p | o:place+vehicle
réserver er a p | o:place+vehicle
annuler er a p | o:abstract
retrouver er a a | o:person+object+animal+text
rencontrer er a p | o:person
accompagner er a a | o:person
guider er a p | o:person
garer er a p | o:vehicle
décoller er a p | i
livrer er a p | o:food+object+text
déménager er a p | i loc
installer er a p | o:object
balayer er a p | o:place
bricoler er a p | i
jardiner er a p | i
camper er a p | i loc
skier er a p | i
pêcher er a p | i loc
chasser er a a | o:animal
respirer er a a | i
hésiter er a p | i inf:à
décider er a p | inf:de
oser er a p | inf
souhaiter er a p | qs inf
exiger er a p | qs
sembler er a a | attr
tousser er a a | i
siffler er a a | i
voler er a a | o:object+food+vehicle
finir ir a a | o:abstract+text+food inf:de
choisir ir a p | o:food+clothing+text+place+abstract inf:de
réussir ir a p | o:abstract inf:à
grandir ir e a | i
réfléchir ir a p | i p:à:abstract
obéir ir a a | p:à:person
rougir ir a p | i
applaudir ir a p | i o:person
atterrir ir a p | i loc
vieillir ir e a | i
ralentir ir a p | i
nourrir ir a p | o:animal+person
attendre re a a | o:person+vehicle+abstract i
vendre re a p | o:food+object+vehicle+place oi:object+food+vehicle:à:person
répondre re a p | p:à:person+text que
entendre re a a | o:person+animal+instrument+abstract que
perdre re a a | o:object+abstract+text
descendre re e a | loc
rendre re a p | oi:object+text:à:person
défendre re a p | o:person+abstract+place
mordre re a a | o:object+food
être irr a a | attr loc prog
avoir irr a a | o:object+animal+abstract+food idiom
aller irr e a | loc
faire irr a p | o:food+abstract+text idiom
pouvoir irr a a | inf
vouloir irr a a | o:food+drink+object+text+animal inf qs
devoir irr a p | inf
savoir irr a p | que si inf
venir irr e a | src loc
devenir venir e p | attr
revenir venir e a | src loc i
tenir venir a p | o:object+animal
obtenir venir a p | o:abstract+text
prendre irr a p | o:food+drink+vehicle+object+text
apprendre prendre a p | o:abstract+text inf:à que
comprendre prendre a p | o:abstract+text+person que
surprendre prendre a p | o:person+animal
mettre irr a p | o:clothing
promettre mettre a p | oi:abstract+object:à:person inf:de que
permettre mettre a p | oi:abstract:à:person
voir irr a a | o:person+animal+object+place+nature+vehicle que
revoir voir a p | o:person+place+text
croire irr a p | que p:à:abstract
lire irr a p | o:text i
relire lire a p | o:text
écrire irr a p | o:text oi:text:à:person
décrire écrire a p | o:place+person+abstract+nature
dire irr a p | que oi:text+abstract:à:person
boire irr a a | o:drink i
courir irr a a | i loc
vivre irr a a | loc i
suivre irr a a | o:person+animal+vehicle+abstract
rire irr a p | i
sourire rire a p | i
connaître irr a p | o:person+place+text+abstract
reconnaître connaître a p | o:person+place+animal
disparaître paraître a a | i
apparaître paraître e a | i
recevoir irr a p | o:text+object+person
apercevoir recevoir a a | o:person+animal+vehicle+nature+place
conduire irr a p | o:vehicle+person
construire conduire a p | o:place+object
traduire conduire a p | o:text
détruire conduire a p | o:place+object+text
peindre irr a p | o:place+object+nature+plant i
éteindre peindre a p | o:object
craindre peindre a a | o:person+animal+abstract
ouvrir irr a a | o:object+place+text
offrir ouvrir a p | oi:object+food+text:à:person
découvrir ouvrir a p | o:place+abstract+animal+text que
souffrir ouvrir a a | i
partir irr e a | loc i
sortir partir e a | src i
sentir partir a a | o:food+drink+plant
mentir partir a p | i
dormir irr a a | i loc
servir irr a p | o:food+drink oi:food+drink:à:person
cueillir irr a p | o:plant+food
battre irr a p | o:person+object
fuir irr a a | i
naître irr e p | city
mourir irr e a | loc i
plaire irr a a | p:à:person
se_lever er e a | i
se_coucher er e a | i
se_réveiller er e a | i
s'habiller er e p | i
se_laver er e a | i
se_promener er e a | loc i
se_reposer er e a | i loc
se_dépêcher er e a | i inf:de
s'amuser er e a | i loc inf:à
s'ennuyer er e a | i
s'arrêter er e a | i loc inf:de
se_tromper er e p | i
se_préparer er e p | i
se_baigner er e a | loc i
s'inquiéter er e p | i p:pour:person
se_moquer er e p | p:de:person+abstract
s'occuper er e p | p:de:person+animal+abstract
s'intéresser er e p | p:à:abstract+text+animal
se_demander er e p | si
se_cacher er e a | loc
s'installer er e a | loc
se_souvenir venir e p | p:de:person+place+abstract+time
s'endormir dormir e a | i
se_perdre re e a | loc
s'asseoir irr e a | loc i
"""

# Irregular models: present (6 forms), participle, and what the defaults cannot derive:
# fut (future stem), imp (imperfect stem), subj (6 forms), impv (tu, nous, vous).
IRREGULAR: dict[str, dict[str, str]] = {
    "être": dict(pres="suis es est sommes êtes sont", pp="été", imp="ét", fut="ser",
                 subj="sois sois soit soyons soyez soient", impv="sois soyons soyez"),
    "avoir": dict(pres="ai as a avons avez ont", pp="eu", fut="aur",
                  subj="aie aies ait ayons ayez aient", impv="aie ayons ayez"),
    "aller": dict(pres="vais vas va allons allez vont", pp="allé", fut="ir",
                  subj="aille ailles aille allions alliez aillent", impv="va allons allez"),
    "faire": dict(pres="fais fais fait faisons faites font", pp="fait", fut="fer",
                  subj="fasse fasses fasse fassions fassiez fassent"),
    "pouvoir": dict(pres="peux peux peut pouvons pouvez peuvent", pp="pu", fut="pourr",
                    subj="puisse puisses puisse puissions puissiez puissent"),
    "vouloir": dict(pres="veux veux veut voulons voulez veulent", pp="voulu", fut="voudr",
                    subj="veuille veuilles veuille voulions vouliez veuillent",
                    impv="veuille veuillons veuillez"),
    "devoir": dict(pres="dois dois doit devons devez doivent", pp="dû", fut="devr"),
    "savoir": dict(pres="sais sais sait savons savez savent", pp="su", fut="saur",
                   subj="sache saches sache sachions sachiez sachent",
                   impv="sache sachons sachez"),
    "venir": dict(pres="viens viens vient venons venez viennent", pp="venu", fut="viendr"),
    "prendre": dict(pres="prends prends prend prenons prenez prennent", pp="pris"),
    "mettre": dict(pres="mets mets met mettons mettez mettent", pp="mis"),
    "voir": dict(pres="vois vois voit voyons voyez voient", pp="vu", fut="verr"),
    "croire": dict(pres="crois crois croit croyons croyez croient", pp="cru"),
    "lire": dict(pres="lis lis lit lisons lisez lisent", pp="lu"),
    "écrire": dict(pres="écris écris écrit écrivons écrivez écrivent", pp="écrit"),
    "dire": dict(pres="dis dis dit disons dites disent", pp="dit"),
    "boire": dict(pres="bois bois boit buvons buvez boivent", pp="bu"),
    "courir": dict(pres="cours cours court courons courez courent", pp="couru", fut="courr"),
    "vivre": dict(pres="vis vis vit vivons vivez vivent", pp="vécu"),
    "suivre": dict(pres="suis suis suit suivons suivez suivent", pp="suivi"),
    "rire": dict(pres="ris ris rit rions riez rient", pp="ri"),
    "connaître": dict(pres="connais connais connaît connaissons connaissez connaissent",
                      pp="connu"),
    "paraître": dict(pres="parais parais paraît paraissons paraissez paraissent", pp="paru"),
    "recevoir": dict(pres="reçois reçois reçoit recevons recevez reçoivent", pp="reçu",
                     fut="recevr"),
    "conduire": dict(pres="conduis conduis conduit conduisons conduisez conduisent",
                     pp="conduit"),
    "peindre": dict(pres="peins peins peint peignons peignez peignent", pp="peint"),
    "ouvrir": dict(pres="ouvre ouvres ouvre ouvrons ouvrez ouvrent", pp="ouvert",
                   fut="ouvrir"),
    "partir": dict(pres="pars pars part partons partez partent", pp="parti"),
    "dormir": dict(pres="dors dors dort dormons dormez dorment", pp="dormi"),
    "servir": dict(pres="sers sers sert servons servez servent", pp="servi"),
    "cueillir": dict(pres="cueille cueilles cueille cueillons cueillez cueillent",
                     pp="cueilli", fut="cueiller"),
    "battre": dict(pres="bats bats bat battons battez battent", pp="battu"),
    "fuir": dict(pres="fuis fuis fuit fuyons fuyez fuient", pp="fui"),
    "naître": dict(pres="nais nais naît naissons naissez naissent", pp="né"),
    "mourir": dict(pres="meurs meurs meurt mourons mourez meurent", pp="mort", fut="mourr"),
    "plaire": dict(pres="plais plais plaît plaisons plaisez plaisent", pp="plu"),
    "asseoir": dict(pres="assieds assieds assied asseyons asseyez asseyent", pp="assis",
                    fut="assiér"),
}

# -er verbs that double their consonant instead of taking a grave accent (appelle, jette).
DOUBLING_ER = frozenset({"appeler", "rappeler", "jeter", "rejeter", "épeler"})
# Future stems that no rule derives.
FUTURE_OVERRIDES = {"envoyer": "enverr"}

FIRST_NAMES = """
m: Jean Pierre Paul Louis Marc Luc Hugo Léo Léon Noé Théo Lucas Nathan Hugo Arthur Jules
   Émile Étienne Éric Édouard Clément Benoît François Jérôme Frédéric Stéphane Rémi Raphaël
   Joël Gaël Maël Loïc Mathéo Timothée Gérard Thomas Antoine Nicolas Julien Olivier Vincent
   Bernard Michel André Philippe Sébastien Grégoire Aurélien Baptiste Mathis Yannick
   Jean-Pierre Jean-Luc Jean-François Pierre-Yves Adrien Maxime Victor Gaspard Anatole
   Bastien Cédric Désiré Félix Noël Zacharie Mohamed Karim Youssef Ibrahim Amadou Moussa
f: Marie Sophie Élodie Hélène Chloé Zoé Léa Emma Inès Agnès Cécile Thérèse Adèle Ève
   Amélie Aurélie Océane Ophélie Noëlle Anaïs Héloïse Françoise Juliette Camille Manon
   Louise Jeanne Margaux Clémence Mélanie Valérie Nathalie Isabelle Sandrine Brigitte
   Béatrice Pénélope Geneviève Solène Maëlle Gaëlle Joëlle Lætitia Jade Lina Rose Alice
   Marie-Claire Anne-Sophie Marie-Hélène Églantine Éléonore Capucine Bérénice Séverine
   Fatou Aminata Leïla Yasmine Nadia Sarah Laure Mathilde Victoire Salomé Apolline
"""

SURNAMES = """
Dupont Martin Bernard Durand Lefèvre Mercier Girard Lambert Fontaine Rousseau Müller
Gauthier Chevalier Rivière Lemaître Benoît Noël Moreau Laurent Simon Michel Leroy Roux
Morel Fournier Bonnet Dupuis Garnier Faure Blanchard Guérin Boucher Lacroix Perrin
Brunet Barbier Leclerc Gérard Collet Marchand Mathieu Poirier Caron Hébert Ménard
Beaulieu Lévêque Prévost Côté Gagnon Tremblay Bouchard Diallo Traoré N'Diaye Haddad
"""

CITIES = """
Paris Lyon Marseille Toulouse Nice Nantes Bordeaux Lille Rennes Reims Strasbourg
Montpellier Grenoble Dijon Angers Nîmes Besançon Orléans Saint-Étienne Aix-en-Provence
Clermont-Ferrand Béziers Périgueux Genève Lausanne Neuchâtel Fribourg Bruxelles Liège
Namur Montréal Québec Dakar Abidjan Alger Tunis Rabat Cannes Avignon Perpignan Brest
Quimper Rouen Caen Tours Poitiers Limoges Pau Bayonne Annecy Chambéry Colmar Metz Nancy
Amiens Calais Vichy Évian Épinal Sète Arles Cherbourg Mâcon Valence Troyes Châlons
Saint-Malo Lourdes Ajaccio Bastia Charleroi Sion Lugano Yaoundé Bamako Lomé Cotonou
"""

# Countries: name gender(m/f/p) -- "en France", "au Canada", "aux États-Unis".
COUNTRIES = """
France f, Belgique f, Suisse f, Italie f, Espagne f, Allemagne f, Chine f, Algérie f,
Tunisie f, Grèce f, Égypte f, Irlande f, Norvège f, Suède f, Autriche f, Pologne f,
Turquie f, Inde f, Russie f, Argentine f, Côte_d'Ivoire f, Angleterre f, Écosse f,
Canada m, Japon m, Portugal m, Brésil m, Maroc m, Sénégal m, Mexique m, Danemark m,
Luxembourg m, Pérou m, Chili m, Cameroun m, Mali m, Vietnam m, Québec m,
États-Unis p, Pays-Bas p, Iran m, Israël m
"""

REGIONS = """
Bretagne Normandie Provence Alsace Bourgogne Auvergne Corse Savoie Lorraine Picardie
Occitanie Wallonie Flandre Gascogne Champagne Touraine Vendée Ardèche Dordogne
Franche-Comté Camargue Sologne
"""

RIVERS = """
Seine f, Loire f, Rhône m, Garonne f, Rhin m, Meuse f, Moselle f, Dordogne f, Marne f,
Saône f, Durance f, Charente f, Somme f, Vienne f, Oise f
"""
