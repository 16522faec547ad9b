"""Write region_capitals.jsonl: capitals of first-level subdivisions (states, provinces, regions)
of countries other than the United States. Public facts, written by hand (general knowledge,
administrative capitals as of 2024); deterministic: ``python3 data/tasks/build_region_capitals.py``.

Left out on purpose: subdivisions whose capital has the subdivision's name (Salzburg, Puebla,
São Paulo, ...; nothing to look up), city-states (Berlin, Vienna), names that are ambiguous
between countries or with a country (Punjab, Limburg, Luxembourg, Georgia, Mexico State, Niger),
and subdivisions with two capitals or a disputed one (Jammu and Kashmir, Canary Islands).
"""

import json
from pathlib import Path

REGIONS = {
    "Canada": [
        ("Ontario", "Toronto"), ("Quebec", "Quebec City"), ("British Columbia", "Victoria"), ("Alberta", "Edmonton"),
        ("Saskatchewan", "Regina"), ("Manitoba", "Winnipeg"), ("Nova Scotia", "Halifax"),
        ("New Brunswick", "Fredericton"), ("Newfoundland and Labrador", "St. John's"),
        ("Prince Edward Island", "Charlottetown"), ("Yukon", "Whitehorse"), ("Northwest Territories", "Yellowknife"),
        ("Nunavut", "Iqaluit"),
    ],
    "Australia": [
        ("New South Wales", "Sydney"), ("Victoria", "Melbourne"), ("Queensland", "Brisbane"),
        ("Western Australia", "Perth"), ("South Australia", "Adelaide"), ("Tasmania", "Hobart"),
        ("Northern Territory", "Darwin"), ("Australian Capital Territory", "Canberra"),
    ],
    "Germany": [
        ("Bavaria", "Munich"), ("Baden-Württemberg", "Stuttgart"), ("Brandenburg", "Potsdam"), ("Hesse", "Wiesbaden"),
        ("Lower Saxony", "Hanover"), ("Mecklenburg-Vorpommern", "Schwerin"), ("North Rhine-Westphalia", "Düsseldorf"),
        ("Rhineland-Palatinate", "Mainz"), ("Saarland", "Saarbrücken"), ("Saxony", "Dresden"),
        ("Saxony-Anhalt", "Magdeburg"), ("Schleswig-Holstein", "Kiel"), ("Thuringia", "Erfurt"),
    ],
    "Austria": [
        ("Lower Austria", "St. Pölten"), ("Upper Austria", "Linz"), ("Styria", "Graz"), ("Tyrol", "Innsbruck"),
        ("Carinthia", "Klagenfurt"), ("Vorarlberg", "Bregenz"), ("Burgenland", "Eisenstadt"),
    ],
    "Switzerland": [
        ("Ticino", "Bellinzona"), ("Valais", "Sion"), ("Graubünden", "Chur"), ("Vaud", "Lausanne"), ("Aargau", "Aarau"),
        ("Thurgau", "Frauenfeld"), ("Basel-Landschaft", "Liestal"), ("Nidwalden", "Stans"), ("Obwalden", "Sarnen"),
        ("Uri", "Altdorf"), ("Appenzell Ausserrhoden", "Herisau"),
    ],
    "India": [
        ("Andhra Pradesh", "Amaravati"), ("Arunachal Pradesh", "Itanagar"), ("Assam", "Dispur"), ("Bihar", "Patna"),
        ("Chhattisgarh", "Raipur"), ("Goa", "Panaji"), ("Gujarat", "Gandhinagar"), ("Haryana", "Chandigarh"),
        ("Himachal Pradesh", "Shimla"), ("Jharkhand", "Ranchi"), ("Karnataka", "Bengaluru"),
        ("Kerala", "Thiruvananthapuram"), ("Madhya Pradesh", "Bhopal"), ("Maharashtra", "Mumbai"), ("Manipur", "Imphal"),
        ("Meghalaya", "Shillong"), ("Mizoram", "Aizawl"), ("Nagaland", "Kohima"), ("Odisha", "Bhubaneswar"),
        ("Rajasthan", "Jaipur"), ("Sikkim", "Gangtok"), ("Tamil Nadu", "Chennai"), ("Telangana", "Hyderabad"),
        ("Tripura", "Agartala"), ("Uttar Pradesh", "Lucknow"), ("Uttarakhand", "Dehradun"), ("West Bengal", "Kolkata"),
        ("Ladakh", "Leh"), ("Lakshadweep", "Kavaratti"),
    ],
    "Pakistan": [("Sindh", "Karachi"), ("Khyber Pakhtunkhwa", "Peshawar"), ("Balochistan", "Quetta")],
    "Brazil": [
        ("Acre", "Rio Branco"), ("Alagoas", "Maceió"), ("Amapá", "Macapá"), ("Amazonas", "Manaus"), ("Bahia", "Salvador"),
        ("Ceará", "Fortaleza"), ("Espírito Santo", "Vitória"), ("Goiás", "Goiânia"), ("Maranhão", "São Luís"),
        ("Mato Grosso", "Cuiabá"), ("Mato Grosso do Sul", "Campo Grande"), ("Minas Gerais", "Belo Horizonte"),
        ("Pará", "Belém"), ("Paraíba", "João Pessoa"), ("Paraná", "Curitiba"), ("Pernambuco", "Recife"),
        ("Piauí", "Teresina"), ("Rio Grande do Norte", "Natal"), ("Rio Grande do Sul", "Porto Alegre"),
        ("Rondônia", "Porto Velho"), ("Roraima", "Boa Vista"), ("Santa Catarina", "Florianópolis"),
        ("Sergipe", "Aracaju"), ("Tocantins", "Palmas"),
    ],
    "Mexico": [
        ("Baja California", "Mexicali"), ("Baja California Sur", "La Paz"), ("Chiapas", "Tuxtla Gutiérrez"),
        ("Coahuila", "Saltillo"), ("Guerrero", "Chilpancingo"), ("Hidalgo", "Pachuca"), ("Jalisco", "Guadalajara"),
        ("Michoacán", "Morelia"), ("Morelos", "Cuernavaca"), ("Nayarit", "Tepic"), ("Nuevo León", "Monterrey"),
        ("Quintana Roo", "Chetumal"), ("Sinaloa", "Culiacán"), ("Sonora", "Hermosillo"), ("Tabasco", "Villahermosa"),
        ("Tamaulipas", "Ciudad Victoria"), ("Veracruz", "Xalapa"), ("Yucatán", "Mérida"),
    ],
    "Argentina": [
        ("Chaco", "Resistencia"), ("Chubut", "Rawson"), ("Entre Ríos", "Paraná"), ("La Pampa", "Santa Rosa"),
        ("Misiones", "Posadas"), ("Río Negro", "Viedma"), ("Santa Cruz", "Río Gallegos"),
        ("Tierra del Fuego", "Ushuaia"), ("Tucumán", "San Miguel de Tucumán"),
    ],
    "Chile": [
        ("Atacama", "Copiapó"), ("Coquimbo", "La Serena"), ("Biobío", "Concepción"), ("Araucanía", "Temuco"),
        ("Los Lagos", "Puerto Montt"), ("Magallanes", "Punta Arenas"), ("Maule", "Talca"), ("Tarapacá", "Iquique"),
        ("Los Ríos", "Valdivia"), ("Aysén", "Coyhaique"),
    ],
    "Peru": [
        ("Loreto", "Iquitos"), ("Junín", "Huancayo"), ("La Libertad", "Trujillo"), ("Lambayeque", "Chiclayo"),
        ("Ucayali", "Pucallpa"), ("Madre de Dios", "Puerto Maldonado"),
    ],
    "Colombia": [
        ("Antioquia", "Medellín"), ("Valle del Cauca", "Cali"), ("Atlántico", "Barranquilla"),
        ("Cundinamarca", "Bogotá"), ("Santander", "Bucaramanga"), ("Bolívar", "Cartagena"), ("Nariño", "Pasto"),
        ("Boyacá", "Tunja"), ("Caldas", "Manizales"), ("Risaralda", "Pereira"), ("Quindío", "Armenia"),
        ("Tolima", "Ibagué"), ("Huila", "Neiva"), ("Meta", "Villavicencio"), ("Magdalena", "Santa Marta"),
        ("Cesar", "Valledupar"), ("La Guajira", "Riohacha"), ("Norte de Santander", "Cúcuta"), ("Cauca", "Popayán"),
        ("Chocó", "Quibdó"),
    ],
    "Venezuela": [
        ("Zulia", "Maracaibo"), ("Carabobo", "Valencia"), ("Lara", "Barquisimeto"), ("Aragua", "Maracay"),
        ("Anzoátegui", "Barcelona"), ("Táchira", "San Cristóbal"), ("Falcón", "Coro"), ("Monagas", "Maturín"),
        ("Portuguesa", "Guanare"), ("Yaracuy", "San Felipe"), ("Nueva Esparta", "La Asunción"),
        ("Delta Amacuro", "Tucupita"),
    ],
    "Spain": [
        ("Andalusia", "Seville"), ("Catalonia", "Barcelona"), ("Galicia", "Santiago de Compostela"),
        ("Basque Country", "Vitoria-Gasteiz"), ("Aragon", "Zaragoza"), ("Castile and León", "Valladolid"),
        ("Castilla-La Mancha", "Toledo"), ("Valencian Community", "Valencia"), ("Extremadura", "Mérida"),
        ("Asturias", "Oviedo"), ("Cantabria", "Santander"), ("Navarre", "Pamplona"), ("La Rioja", "Logroño"),
        ("Balearic Islands", "Palma"),
    ],
    "Italy": [
        ("Lombardy", "Milan"), ("Lazio", "Rome"), ("Campania", "Naples"), ("Sicily", "Palermo"), ("Veneto", "Venice"),
        ("Piedmont", "Turin"), ("Emilia-Romagna", "Bologna"), ("Tuscany", "Florence"), ("Apulia", "Bari"),
        ("Calabria", "Catanzaro"), ("Sardinia", "Cagliari"), ("Liguria", "Genoa"), ("Marche", "Ancona"),
        ("Abruzzo", "L'Aquila"), ("Friuli-Venezia Giulia", "Trieste"), ("Trentino-Alto Adige", "Trento"),
        ("Umbria", "Perugia"), ("Basilicata", "Potenza"), ("Molise", "Campobasso"),
    ],
    "France": [
        ("Île-de-France", "Paris"), ("Brittany", "Rennes"), ("Normandy", "Rouen"), ("Occitanie", "Toulouse"),
        ("Nouvelle-Aquitaine", "Bordeaux"), ("Auvergne-Rhône-Alpes", "Lyon"), ("Hauts-de-France", "Lille"),
        ("Grand Est", "Strasbourg"), ("Provence-Alpes-Côte d'Azur", "Marseille"), ("Pays de la Loire", "Nantes"),
        ("Bourgogne-Franche-Comté", "Dijon"), ("Centre-Val de Loire", "Orléans"), ("Corsica", "Ajaccio"),
    ],
    "Netherlands": [
        ("North Holland", "Haarlem"), ("South Holland", "The Hague"), ("Friesland", "Leeuwarden"), ("Drenthe", "Assen"),
        ("Overijssel", "Zwolle"), ("Flevoland", "Lelystad"), ("Gelderland", "Arnhem"), ("Zeeland", "Middelburg"),
    ],
    "Belgium": [
        ("East Flanders", "Ghent"), ("West Flanders", "Bruges"), ("Flemish Brabant", "Leuven"),
        ("Walloon Brabant", "Wavre"), ("Hainaut", "Mons"),
    ],
    "China": [
        ("Guangdong", "Guangzhou"), ("Sichuan", "Chengdu"), ("Hubei", "Wuhan"), ("Hunan", "Changsha"),
        ("Zhejiang", "Hangzhou"), ("Jiangsu", "Nanjing"), ("Shandong", "Jinan"), ("Henan", "Zhengzhou"),
        ("Hebei", "Shijiazhuang"), ("Shanxi", "Taiyuan"), ("Shaanxi", "Xi'an"), ("Yunnan", "Kunming"),
        ("Guizhou", "Guiyang"), ("Fujian", "Fuzhou"), ("Jiangxi", "Nanchang"), ("Anhui", "Hefei"),
        ("Liaoning", "Shenyang"), ("Jilin", "Changchun"), ("Heilongjiang", "Harbin"), ("Gansu", "Lanzhou"),
        ("Qinghai", "Xining"), ("Hainan", "Haikou"), ("Inner Mongolia", "Hohhot"), ("Xinjiang", "Urumqi"),
        ("Tibet", "Lhasa"), ("Guangxi", "Nanning"), ("Ningxia", "Yinchuan"),
    ],
    "Japan": [
        ("Hokkaido", "Sapporo"), ("Iwate", "Morioka"), ("Miyagi", "Sendai"), ("Ibaraki", "Mito"),
        ("Tochigi", "Utsunomiya"), ("Gunma", "Maebashi"), ("Kanagawa", "Yokohama"), ("Ishikawa", "Kanazawa"),
        ("Yamanashi", "Kofu"), ("Aichi", "Nagoya"), ("Mie", "Tsu"), ("Shiga", "Otsu"), ("Hyogo", "Kobe"),
        ("Shimane", "Matsue"), ("Kagawa", "Takamatsu"), ("Ehime", "Matsuyama"), ("Okinawa", "Naha"),
    ],
    "Malaysia": [
        ("Sabah", "Kota Kinabalu"), ("Sarawak", "Kuching"), ("Penang", "George Town"), ("Perak", "Ipoh"),
        ("Selangor", "Shah Alam"), ("Kedah", "Alor Setar"), ("Kelantan", "Kota Bharu"),
        ("Terengganu", "Kuala Terengganu"), ("Pahang", "Kuantan"), ("Negeri Sembilan", "Seremban"),
        ("Perlis", "Kangar"),
    ],
    "Indonesia": [
        ("West Java", "Bandung"), ("East Java", "Surabaya"), ("Central Java", "Semarang"), ("Bali", "Denpasar"),
        ("North Sumatra", "Medan"), ("West Sumatra", "Padang"), ("South Sulawesi", "Makassar"), ("Papua", "Jayapura"),
        ("East Kalimantan", "Samarinda"), ("Riau", "Pekanbaru"),
    ],
    "Russia": [
        ("Tatarstan", "Kazan"), ("Bashkortostan", "Ufa"), ("Chechnya", "Grozny"), ("Dagestan", "Makhachkala"),
        ("Yakutia", "Yakutsk"), ("Buryatia", "Ulan-Ude"), ("Karelia", "Petrozavodsk"), ("Komi Republic", "Syktyvkar"),
        ("Chuvashia", "Cheboksary"), ("Udmurtia", "Izhevsk"), ("Mordovia", "Saransk"), ("Tuva", "Kyzyl"),
        ("Kalmykia", "Elista"), ("Primorsky Krai", "Vladivostok"),
    ],
    "Iran": [
        ("Razavi Khorasan", "Mashhad"), ("Fars", "Shiraz"), ("East Azerbaijan", "Tabriz"), ("Khuzestan", "Ahvaz"),
        ("Gilan", "Rasht"), ("Mazandaran", "Sari"), ("Sistan and Baluchestan", "Zahedan"),
    ],
    "South Africa": [
        ("Gauteng", "Johannesburg"), ("Western Cape", "Cape Town"), ("KwaZulu-Natal", "Pietermaritzburg"),
        ("Eastern Cape", "Bhisho"), ("Free State", "Bloemfontein"), ("Limpopo", "Polokwane"),
        ("Mpumalanga", "Mbombela"), ("North West", "Mahikeng"), ("Northern Cape", "Kimberley"),
    ],
    "Nigeria": [
        ("Lagos State", "Ikeja"), ("Rivers State", "Port Harcourt"), ("Oyo State", "Ibadan"), ("Anambra", "Awka"),
        ("Delta State", "Asaba"), ("Edo State", "Benin City"), ("Ogun State", "Abeokuta"), ("Ondo State", "Akure"),
        ("Osun State", "Osogbo"), ("Kwara", "Ilorin"), ("Plateau State", "Jos"), ("Borno", "Maiduguri"),
        ("Cross River", "Calabar"), ("Akwa Ibom", "Uyo"), ("Imo State", "Owerri"), ("Abia State", "Umuahia"),
        ("Benue", "Makurdi"), ("Kogi", "Lokoja"), ("Nasarawa", "Lafia"), ("Adamawa", "Yola"), ("Taraba", "Jalingo"),
        ("Yobe", "Damaturu"), ("Zamfara", "Gusau"), ("Jigawa", "Dutse"), ("Bayelsa", "Yenagoa"),
        ("Ebonyi", "Abakaliki"),
    ],
}


def rows() -> list[dict]:
    out = [{"argument": a, "answer": c, "country": country} for country, pairs in REGIONS.items() for a, c in pairs]
    args = [r["argument"] for r in out]
    dup = {a for a in args if args.count(a) > 1}
    if dup:
        raise SystemExit(f"duplicate subdivisions: {sorted(dup)}")
    return sorted(out, key=lambda r: (r["country"], r["argument"]))


if __name__ == "__main__":
    path = Path(__file__).with_name("region_capitals.jsonl")
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows()), encoding="utf-8")
    print(f"wrote {path} ({len(rows())} rows)")
