#!/usr/bin/env python3
"""Deterministically write the function-vector-style task files of lensarith's vector bench.

The pairs are general knowledge, written by hand below (antonyms, synonyms, currencies,
continents, French words, irregular plurals and -ing spellings); regular plurals, -ing forms,
letters, lowercase words and sequence neighbours follow from the word lists by the spelling
rules coded here (exceptions listed explicitly). Standard library only.

Usage: python3 data/tasks/build_fv_tasks.py   (writes next to this file)
"""
import json
import os
import re
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))

def pairs(text):
    out = []
    for line in text.strip().splitlines():
        for item in line.split(";"):
            item = item.strip()
            if not item:
                continue
            a, b = [x.strip() for x in item.split("=")]
            out.append((a, b))
    return out

ANTONYMS = pairs("""
good=bad; bad=good; high=low; low=high; long=short; tall=short; up=down; down=up; early=late; late=early
rich=poor; poor=rich; strong=weak; weak=strong; hard=soft; soft=hard; wet=dry; dry=wet; full=empty; empty=full
heavy=light; light=dark; dark=light; thick=thin; wide=narrow; narrow=wide; deep=shallow; shallow=deep
clean=dirty; dirty=clean; loud=quiet; quiet=loud; noisy=quiet; cheap=expensive; expensive=cheap
easy=difficult; difficult=easy; true=false; false=true; wrong=right; first=last; last=first
begin=end; start=finish; win=lose; lose=win; push=pull; pull=push; buy=sell; sell=buy; give=take; take=give
come=go; go=come; enter=exit; arrive=leave; accept=reject; love=hate; hate=love; laugh=cry
remember=forget; forget=remember; increase=decrease; decrease=increase; above=below; below=above
inside=outside; outside=inside; before=after; after=before; front=back; back=front; left=right
north=south; south=north; east=west; west=east; day=night; night=day; summer=winter; winter=summer
black=white; white=black; friend=enemy; enemy=friend; question=answer; answer=question; war=peace; peace=war
sweet=sour; sour=sweet; rough=smooth; smooth=rough; near=far; far=near; safe=dangerous; dangerous=safe
brave=cowardly; kind=cruel; cruel=kind; polite=rude; rude=polite; simple=complex; complex=simple
public=private; private=public; major=minor; minor=major; maximum=minimum; minimum=maximum
positive=negative; negative=positive; present=absent; absent=present; visible=invisible; possible=impossible
legal=illegal; alive=dead; dead=alive; asleep=awake; awake=asleep; always=never; never=always
many=few; few=many; more=less; less=more; most=least; least=most; best=worst; worst=best; better=worse; worse=better
top=bottom; bottom=top; over=under; under=over; inner=outer; outer=inner; upper=lower; lower=upper
ancient=modern; modern=ancient; future=past; past=future; victory=defeat; defeat=victory
success=failure; failure=success; arrival=departure; departure=arrival; import=export; export=import
input=output; output=input; male=female; female=male; generous=selfish; selfish=generous
honest=dishonest; innocent=guilty; guilty=innocent; hot=cold; cold=hot; warm=cool; cool=warm
big=small; small=big; large=small; little=big; tiny=huge; huge=tiny; fast=slow; slow=fast; quick=slow
happy=sad; sad=happy; open=closed; closed=open; old=new; new=old; young=old; fat=thin; thin=fat
lazy=hard-working; calm=angry; sharp=blunt; fresh=stale; wise=foolish; clever=stupid; famous=unknown
sudden=gradual; wild=tame; tame=wild; sick=healthy; healthy=sick; busy=idle; certain=uncertain
agree=disagree; allow=forbid; attack=defend; defend=attack; borrow=lend; lend=borrow; catch=throw
teach=learn; learn=teach; sink=float; float=sink; rise=fall; fall=rise; shout=whisper; whisper=shout
""")

SYNONYMS = pairs("""
big=large; large=big; small=little; little=small; fast=quick; quick=fast; rapid=fast; happy=glad; glad=happy
begin=start; start=begin; end=finish; finish=end; angry=mad; mad=angry; smart=clever; clever=smart
easy=simple; simple=easy; hard=difficult; difficult=hard; rich=wealthy; wealthy=rich; sick=ill; ill=sick
shut=close; close=shut; silent=quiet; quiet=silent; huge=enormous; enormous=huge; tiny=small
pretty=beautiful; beautiful=pretty; funny=amusing; scared=afraid; afraid=scared; brave=courageous
sad=unhappy; unhappy=sad; buy=purchase; purchase=buy; help=assist; assist=help; gift=present; present=gift
car=automobile; couch=sofa; sofa=couch; street=road; road=street; stone=rock; rock=stone; shout=yell; yell=shout
talk=speak; speak=talk; fix=repair; repair=fix; build=construct; construct=build; choose=pick; pick=choose
job=work; work=job; cash=money; money=cash; house=home; home=house; center=middle; middle=center
reply=answer; answer=reply; story=tale; tale=story; jump=leap; leap=jump; error=mistake; mistake=error
final=last; last=final; initial=first; wet=damp; damp=wet; thin=slim; slim=thin; kind=nice; nice=kind
loud=noisy; noisy=loud; odd=strange; strange=weird; weird=odd; sure=certain; certain=sure
maybe=perhaps; perhaps=maybe; shop=store; store=shop; ship=boat; boat=ship; bag=sack; sack=bag
photo=picture; picture=photo; trip=journey; journey=trip; test=exam; exam=test; cold=chilly; chilly=cold
correct=right; incorrect=wrong; wrong=incorrect; fall=drop; drop=fall; leave=depart; depart=leave
rubbish=garbage; garbage=rubbish; idea=notion; notion=idea; calm=peaceful; peaceful=calm; gentle=mild
mild=gentle; ancient=old; old=ancient; modern=new; new=modern; rude=impolite; honest=truthful
famous=well-known; lazy=idle; idle=lazy; sleepy=tired; tired=sleepy; sudden=abrupt; strong=powerful
powerful=strong; proud=arrogant; curious=inquisitive; nervous=anxious; anxious=nervous; lucky=fortunate
fortunate=lucky; tall=high; wide=broad; broad=wide; sharp=keen; smooth=even; soft=gentle
""")

def plural_rule(w):
    if re.search(r"(s|x|z|ch|sh)$", w):
        return w + "es"
    if re.search(r"[^aeiou]y$", w):
        return w[:-1] + "ies"
    return w + "s"

NOUNS = """basket bedroom bicycle blanket book bottle bread bridge butter button camera candle carpet castle chair
church city clock cloud computer country cousin dance desk doctor door dragon elephant engine family farmer feather
flower forest friend garden guitar hammer holiday horse house island jacket journey kettle kitchen ladder lamp letter
library machine market mirror monkey morning mountain needle ocean office palace pencil pillow planet pocket rabbit
river school shadow shoulder soldier spoon station story student summer table teacher ticket tiger tower train valley
village wagon window winter wizard mug window stone road book chair door garden field glass house pencil dream cloud
pen notebook keychain booklet paperclip envelope jug crayon puzzle plate cup textbook bracelet necklace hat scarf
umbrella backpack candle wallet bowl apple banana orange egg bird cat dog cow girl boy king queen brother sister
father mother uncle street car boat ship plane road park lake sea hill tree leaf bush rose song game word name day
week month year hour minute city box fox bus dish brush watch match kiss wish lunch beach bench church glass class
boss dress baby lady party story cherry berry penny fly spy toy key monkey valley day boy""".split()
IRREGULAR_PLURAL = dict(pairs("""
child=children; man=men; woman=women; mouse=mice; foot=feet; tooth=teeth; goose=geese; person=people
leaf=leaves; knife=knives; wife=wives; life=lives; wolf=wolves; half=halves; shelf=shelves; loaf=loaves
thief=thieves; calf=calves; scarf=scarves; potato=potatoes; tomato=tomatoes; hero=heroes; echo=echoes; ox=oxen
cactus=cacti; fungus=fungi; crisis=crises; analysis=analyses; thesis=theses; phenomenon=phenomena
criterion=criteria; datum=data; louse=lice; piano=pianos; photo=photos; radio=radios; roof=roofs
chief=chiefs; belief=beliefs; cliff=cliffs
"""))

MASS_NOUNS = {"bread", "butter", "summer", "winter", "morning"}


def singular_plural():
    seen = {}
    for w in NOUNS:
        if w in MASS_NOUNS:
            continue
        seen.setdefault(w, plural_rule(w))
    for a, b in IRREGULAR_PLURAL.items():
        seen[a] = b
    return sorted(seen.items())

# -ing spelling: final consonant doubled for these (stressed final syllable); explicit forms below
ING_DOUBLE = set("""run swim sit begin forget win get spin dig shop stop plan drop step grab trap trot tug wag zip
nag pet pat hug jog rob rub sob chat clap drag drip drum grin hop knit nod pin plot prefer refer occur admit commit
omit permit regret submit equip fit hit quit set shut cut put let bet stir slip trip skip ship ship""".split())
VERBS = """abandon accept add admit adapt afford agree alarm allow alter answer appear apply argue arrange arrest arrive
ask attack attend avoid bake believe belong boil borrow bounce breathe brush burn call carry change chase cheer chew
clean clear climb close collect comb count cover crash cross cry dance decide defend deliver deny depend describe
destroy develop die dream dress drop dry earn enjoy enter escape expect explain fail fear fill finish fix float fold
follow fry guard guess hand happen hate help hope hunt hurry improve invite jump kick kill kiss knock laugh learn lie
lift like listen live lock look love marry match melt miss move need obey offer open order paint pass pick plan plant
play pray prefer prepare promise protect pull push rain reach relax remember repeat reply rest return rush save score
share shout smile smoke sneeze snow solve spell start stay step stop study suggest surprise talk taste thank tie
touch travel try turn use visit wait walk want warn wash watch wave weigh wish wonder work worry yawn yell
be see agree flee free ski dye tie die lie arise awake bear become begin bend bind bite bleed blow break breed bring
build buy catch choose come creep deal dig do draw drink drive eat fall feed feel fight find fly forget forgive
freeze get give go grind grow have hear hide hold keep know lay lead leave lend lose make mean meet pay ride ring rise
run say seek sell send shake shoot shrink sing sink sit sleep slide speak spend spin stand steal stick sting strike
swear sweep swim swing take teach tear tell think throw understand wake wear weep win write""".split()
ING_EXPLICIT = dict(pairs("""
be=being; see=seeing; agree=agreeing; flee=fleeing; free=freeing; ski=skiing; dye=dyeing; tie=tying; die=dying
lie=lying; travel=traveling; visit=visiting; open=opening; happen=happening; offer=offering; answer=answering
enter=entering; wonder=wondering; develop=developing; listen=listening; order=ordering; cover=covering
deliver=delivering; remember=remembering; relax=relaxing; fix=fixing; snow=snowing; sew=sewing; row=rowing
obey=obeying; play=playing; pray=praying; stay=staying; pay=paying; say=saying; lay=laying; enjoy=enjoying
"""))

def ing(v):
    if v in ING_EXPLICIT:
        return ING_EXPLICIT[v]
    if v in ING_DOUBLE:
        return v + v[-1] + "ing"
    if v.endswith("ie"):
        return v[:-2] + "ying"
    if v.endswith("e") and not v.endswith(("ee", "ye", "oe")):
        return v[:-1] + "ing"
    return v + "ing"

def present_participle():
    return sorted({v: ing(v) for v in VERBS}.items())

CURRENCY = pairs("""
Japan=yen; China=yuan; India=rupee; Pakistan=rupee; Nepal=rupee; Sri Lanka=rupee; Indonesia=rupiah
United States=dollar; Canada=dollar; Australia=dollar; New Zealand=dollar; Jamaica=dollar; Singapore=dollar
Fiji=dollar; Liberia=dollar; Namibia=dollar; United Kingdom=pound; Egypt=pound; Lebanon=pound; Syria=pound
Sudan=pound; Germany=euro; France=euro; Italy=euro; Spain=euro; Portugal=euro; Ireland=euro; Netherlands=euro
Belgium=euro; Austria=euro; Finland=euro; Greece=euro; Estonia=euro; Latvia=euro; Lithuania=euro; Slovakia=euro
Slovenia=euro; Croatia=euro; Luxembourg=euro; Malta=euro; Cyprus=euro; Mexico=peso; Argentina=peso; Chile=peso
Colombia=peso; Cuba=peso; Philippines=peso; Uruguay=peso; Brazil=real; South Africa=rand; Russia=ruble
Belarus=ruble; South Korea=won; North Korea=won; Switzerland=franc; Liechtenstein=franc; Sweden=krona
Norway=krone; Denmark=krone; Iceland=krona; Poland=zloty; Hungary=forint; Czech Republic=koruna; Turkey=lira
Israel=shekel; Thailand=baht; Vietnam=dong; Malaysia=ringgit; Nigeria=naira; Ghana=cedi; Kenya=shilling
Uganda=shilling; Tanzania=shilling; Somalia=shilling; Zambia=kwacha; Malawi=kwacha; Ethiopia=birr
Saudi Arabia=riyal; Qatar=riyal; Iran=rial; Oman=rial; Yemen=rial; United Arab Emirates=dirham; Morocco=dirham
Iraq=dinar; Jordan=dinar; Kuwait=dinar; Bahrain=dinar; Libya=dinar; Tunisia=dinar; Algeria=dinar; Serbia=dinar
Ukraine=hryvnia; Romania=leu; Moldova=leu; Bulgaria=lev; Georgia=lari; Armenia=dram; Azerbaijan=manat
Turkmenistan=manat; Kazakhstan=tenge; Mongolia=tugrik; Bangladesh=taka; Cambodia=riel; Laos=kip; Myanmar=kyat
Peru=sol; Venezuela=bolivar; Bolivia=boliviano; Paraguay=guarani; Costa Rica=colon; Guatemala=quetzal
Honduras=lempira; Nicaragua=cordoba; Panama=balboa; Haiti=gourde; Botswana=pula; Angola=kwanza
Mozambique=metical; Madagascar=ariary; Albania=lek; North Macedonia=denar; Afghanistan=afghani; Bhutan=ngultrum
Maldives=rufiyaa; Tonga=pa'anga; Samoa=tala; Papua New Guinea=kina; Rwanda=franc; Burundi=franc; Guinea=franc
Djibouti=franc
""")

CONTINENT_LISTS = {
    "Africa": "Algeria; Angola; Benin; Botswana; Burkina Faso; Burundi; Cameroon; Cape Verde; Central African Republic; "
    "Chad; Comoros; Democratic Republic of the Congo; Djibouti; Egypt; Equatorial Guinea; Eritrea; Eswatini; Ethiopia; "
    "Gabon; Gambia; Ghana; Guinea; Guinea-Bissau; Ivory Coast; Kenya; Lesotho; Liberia; Libya; Madagascar; Malawi; Mali; "
    "Mauritania; Mauritius; Mayotte; Morocco; Mozambique; Namibia; Niger; Nigeria; Republic of the Congo; Reunion; Rwanda; "
    "Sao Tome and Principe; Senegal; Seychelles; Sierra Leone; Somalia; Somaliland; South Africa; South Sudan; Sudan; "
    "Tanzania; Togo; Tunisia; Uganda; Western Sahara; Zambia; Zimbabwe",
    "Asia": "Afghanistan; Bahrain; Bangladesh; Bhutan; Brunei; Cambodia; China; India; Indonesia; Iran; Iraq; Israel; "
    "Japan; Jordan; Kuwait; Kyrgyzstan; Laos; Lebanon; Malaysia; Maldives; Mongolia; Myanmar; Nepal; North Korea; Oman; "
    "Pakistan; Philippines; Qatar; Saudi Arabia; South Korea; Sri Lanka; Syria; Taiwan; Tajikistan; Thailand; "
    "Turkmenistan; United Arab Emirates; Uzbekistan; Vietnam; Yemen",
    "Europe": "Aland Islands; Albania; Andorra; Austria; Belarus; Belgium; Bosnia and Herzegovina; Bulgaria; Croatia; Czech Republic; "
    "Denmark; England; Estonia; Faroe Islands; Finland; France; Germany; Greece; Guernsey; Hungary; Iceland; Ireland; "
    "Isle of Man; Italy; Jersey; Kosovo; Latvia; Liechtenstein; Lithuania; Luxembourg; Malta; Moldova; Montenegro; "
    "Netherlands; North Macedonia; Northern Ireland; Norway; Poland; Portugal; Romania; San Marino; Scotland; Serbia; "
    "Slovakia; Slovenia; Spain; Svalbard; Sweden; Switzerland; Transnistria; Ukraine; United Kingdom; Wales",
    "Oceania": "American Samoa; Australia; Cook Islands; Fiji; French Polynesia; Guam; Kiribati; Marshall Islands; "
    "Micronesia; Nauru; New Caledonia; New Zealand; Niue; Norfolk Island; Northern Mariana Islands; Palau; "
    "Papua New Guinea; Pitcairn Islands; Samoa; Solomon Islands; Tonga; Tuvalu; Vanuatu; Wallis and Futuna",
    "North America": "Anguilla; Antigua and Barbuda; Bahamas; Barbados; Belize; Bermuda; British Virgin Islands; Canada; "
    "Cayman Islands; Costa Rica; Cuba; Dominica; Dominican Republic; El Salvador; Greenland; Grenada; Guadeloupe; "
    "Guatemala; Haiti; Honduras; Jamaica; Martinique; Mexico; Montserrat; Nicaragua; Panama; Puerto Rico; "
    "Saint Barthelemy; Saint Kitts and Nevis; Saint Lucia; Saint Martin; Saint Pierre and Miquelon; "
    "Saint Vincent and the Grenadines; Sint Maarten; Turks and Caicos Islands; United States; United States Virgin Islands",
    "South America": "Argentina; Bolivia; Brazil; Chile; Colombia; Ecuador; Falkland Islands; French Guiana; Guyana; "
    "Paraguay; Peru; Suriname; Uruguay; Venezuela",
}


def continents():
    rows = {}
    for cont, text in CONTINENT_LISTS.items():
        for name in text.split(";"):
            name = name.strip()
            assert name not in rows, name
            rows[name] = cont
    return sorted(rows.items())


UPPER_WORDS = """ancient basket bedroom bicycle blanket book bottle brave bread bridge busy butter button calm camera
candle careful carpet castle chair cheap cheese church city clean clever clock cloud cold computer country cousin
curious dance desk doctor door dragon eager early elephant empty engine family famous farmer feather flower forest
fresh friend funny garden gentle guitar hammer happy heavy holiday honest horse house humble island jacket journey
kettle kind kitchen ladder lamp large lazy letter library little loud lucky machine market milk mirror modern monkey
morning mountain music narrow needle nervous noisy ocean office palace paper pencil pepper pillow planet pocket
polite proud quick quiet rabbit rapid rich river salt school shadow sharp shoulder silent simple sleepy small smooth
soft soldier spoon station story strange strong student sudden sugar summer sweet table tall teacher thick ticket
tiger tiny tower train valley village wagon warm water wide window winter wise wizard young""".split()

LETTER_WORDS = """apple table river stone music paper window garden house chair water money cloud field glass
morning pencil dream bread horse school summer winter friend doctor island ocean planet rabbit tiger valley village
wizard yellow zebra kettle jacket ladder needle quiet umbrella violin engine apron orange elephant igloo banana
candle dragon feather guitar hammer lemon mirror nest otter pillow queen rocket sugar tower yacht bottle carpet
desk forest jungle kitchen lamp market night owl puzzle robot spoon ticket uncle velvet wagon xylophone yogurt zoo
ant bee cat dog egg fox goat hat ink jam kite lion map nut oak pig rat sun toy van web yak""".split()

NUMBERS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = "January February March April May June July August September October November December".split()
ORDINALS = "first second third fourth fifth sixth seventh eighth ninth tenth".split()
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def sequences():
    nxt = []
    for seq, cyclic in ((NUMBERS, False), ([str(i) for i in range(21)], False), (DAYS, True), (MONTHS, True),
                        (ORDINALS, False), (list(LETTERS), False), ([c.upper() for c in LETTERS], False)):
        for i, item in enumerate(seq):
            if i + 1 < len(seq):
                nxt.append((item, seq[i + 1]))
            elif cyclic:
                nxt.append((item, seq[0]))
    prev = [(b, a) for a, b in nxt]
    return nxt, prev


FRENCH = pairs("""
cat=chat; dog=chien; house=maison; water=eau; bread=pain; cheese=fromage; apple=pomme; book=livre; car=voiture
city=ville; sun=soleil; moon=lune; star=étoile; sea=mer; tree=arbre; flower=fleur; red=rouge; blue=bleu; green=vert
white=blanc; black=noir; big=grand; small=petit; good=bon; new=nouveau; old=vieux; man=homme; woman=femme
child=enfant; boy=garçon; girl=fille; friend=ami; father=père; mother=mère; brother=frère; sister=sœur; day=jour
night=nuit; week=semaine; hour=heure; door=porte; window=fenêtre; chair=chaise; bed=lit; milk=lait; wine=vin
fish=poisson; bird=oiseau; horse=cheval; cow=vache; pig=cochon; mouse=souris; king=roi; queen=reine; school=école
church=église; hand=main; head=tête; mouth=bouche; heart=cœur; one=un; two=deux; three=trois; four=quatre
five=cinq; seven=sept; eight=huit; nine=neuf; ten=dix; yes=oui; love=amour; war=guerre; peace=paix; money=argent
work=travail; country=pays; world=monde; life=vie; death=mort; snow=neige; rain=pluie; wind=vent; fire=feu
earth=terre; sky=ciel; mountain=montagne; river=rivière; island=île; forest=forêt; street=rue; bridge=pont
boat=bateau; plane=avion; shoe=chaussure; hat=chapeau; shirt=chemise; dress=robe; kitchen=cuisine; garden=jardin
key=clé; letter=lettre; word=mot; song=chanson; music=musique; Monday=lundi; Tuesday=mardi; Wednesday=mercredi
Thursday=jeudi; Friday=vendredi; Saturday=samedi; Sunday=dimanche; spring=printemps; summer=été; winter=hiver
egg=œuf; butter=beurre; sugar=sucre; salt=sel; meat=viande; chicken=poulet; beach=plage; sand=sable
""")


def write(name, rows):
    path = os.path.join(OUT, name + ".jsonl")
    args = [a for a, _ in rows]
    assert len(args) == len(set(args)), (name, [a for a in args if args.count(a) > 1])
    assert all(a != b for a, b in rows), (name, [(a, b) for a, b in rows if a == b])
    with open(path, "w", encoding="utf-8") as fh:
        for a, b in rows:
            fh.write(json.dumps({"argument": a, "answer": b}, ensure_ascii=False) + "\n")
    print(f"{name}: {len(rows)}")


if __name__ == "__main__":
    write("antonyms", sorted(dict(ANTONYMS).items()))
    write("synonyms", sorted(dict(SYNONYMS).items()))
    write("singular_plural", singular_plural())
    write("present_participle", present_participle())
    write("country_currency", sorted(dict(CURRENCY).items()))
    write("country_continent", continents())
    write("lowercase", sorted((w[:1].upper() + w[1:], w) for w in UPPER_WORDS))
    words = sorted(set(LETTER_WORDS))
    write("first_letter", [(w, w[0]) for w in words])
    write("last_letter", [(w, w[-1]) for w in words])
    nxt, prev = sequences()
    write("next_item", nxt)
    write("prev_item", prev)
    write("english_french", sorted(dict(FRENCH).items()))
