"""TEST-ONLY generator of person records with known truth, for the linkage tests and the
dedupe benchmark. It is deliberately small and self-contained; the project's real source
simulator lives in ``datafirst_assets/simulate/`` and should replace this where it fits.

People get names (Zipf-distributed, so some are common), a date of birth, sex, ethnic
group, postcode, address, PNC and CRO. Each person has a heavy-tailed number of records
and each record is corrupted independently: keyboard typos, nicknames, forename/surname
swaps, dropped or promoted middle names, surname changes, DOB day/month swaps, typos and
1 January placeholders, postcode moves and typos, junk PNCs, and missing values. Error
rates can be scaled per ethnic group so that linkage quality differs by subgroup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

_MALE = (
    "JAMES JOHN ROBERT MICHAEL WILLIAM DAVID RICHARD JOSEPH THOMAS CHARLES CHRISTOPHER DANIEL "
    "MATTHEW ANTHONY MARK DONALD STEVEN PAUL ANDREW JOSHUA KENNETH KEVIN BRIAN GEORGE TIMOTHY "
    "RONALD EDWARD JASON JEFFREY RYAN JACOB GARY NICHOLAS ERIC JONATHAN STEPHEN LARRY JUSTIN "
    "SCOTT BRANDON BENJAMIN SAMUEL GREGORY ALEXANDER FRANK PATRICK RAYMOND JACK DENNIS JERRY "
    "TYLER AARON JOSE ADAM NATHAN HENRY DOUGLAS ZACHARY PETER KYLE ETHAN WALTER NOAH JEREMY "
    "CHRISTIAN KEITH ROGER TERRY GERALD HAROLD SEAN AUSTIN CARL ARTHUR LAWRENCE DYLAN JESSE "
    "JORDAN BRYAN BILLY JOE BRUCE GABRIEL LOGAN ALBERT WILLIE ALAN JUAN WAYNE ELIJAH RANDY ROY "
    "VINCENT RALPH EUGENE RUSSELL BOBBY MASON PHILIP LOUIS MOHAMMED ALI OMAR HASSAN KWAME "
    "OLUWASEUN CHUKWUEMEKA RAJESH SANJAY ARJUN WEI JIAN DARIUSZ PIOTR TOMASZ"
).split()
_FEMALE = (
    "MARY PATRICIA JENNIFER LINDA ELIZABETH BARBARA SUSAN JESSICA SARAH KAREN LISA NANCY BETTY "
    "MARGARET SANDRA ASHLEY KIMBERLY EMILY DONNA MICHELLE CAROL AMANDA DOROTHY MELISSA DEBORAH "
    "STEPHANIE REBECCA SHARON LAURA CYNTHIA KATHLEEN AMY ANGELA SHIRLEY ANNA BRENDA PAMELA EMMA "
    "NICOLE HELEN SAMANTHA KATHERINE CHRISTINE DEBRA RACHEL CAROLYN JANET CATHERINE MARIA "
    "HEATHER DIANE RUTH JULIE OLIVIA JOYCE VIRGINIA VICTORIA KELLY LAUREN CHRISTINA JOAN "
    "EVELYN JUDITH MEGAN ANDREA CHERYL HANNAH JACQUELINE MARTHA GLORIA TERESA ANN SARA MADISON "
    "FRANCES KATHRYN JANICE JEAN ABIGAIL ALICE JUDY SOPHIA GRACE DENISE AMBER DORIS MARILYN "
    "DANIELLE BEVERLY ISABELLA THERESA DIANA NATALIE BRITTANY CHARLOTTE MARIE KAYLA ALEXIS "
    "LORI FATIMA AISHA AMINA NGOZI CHIAMAKA PRIYA ANJALI MEI XIN AGNIESZKA KATARZYNA"
).split()
_NICKNAMES = {
    "ROBERT": "BOB", "WILLIAM": "BILL", "RICHARD": "DICK", "JAMES": "JIM", "JOHN": "JACK",
    "MICHAEL": "MIKE", "DAVID": "DAVE", "JOSEPH": "JOE", "THOMAS": "TOM", "CHARLES": "CHARLIE",
    "CHRISTOPHER": "CHRIS", "DANIEL": "DAN", "MATTHEW": "MATT", "ANTHONY": "TONY", "ANDREW": "ANDY",
    "STEVEN": "STEVE", "KENNETH": "KEN", "EDWARD": "TED", "JONATHAN": "JON", "NICHOLAS": "NICK",
    "SAMUEL": "SAM", "BENJAMIN": "BEN", "ALEXANDER": "ALEX", "PATRICK": "PAT", "PETER": "PETE",
    "ELIZABETH": "LIZ", "MARGARET": "MAGGIE", "PATRICIA": "PAT", "JENNIFER": "JENNY",
    "SUSAN": "SUE", "KATHERINE": "KATE", "CATHERINE": "CATH", "REBECCA": "BECKY", "DEBORAH": "DEBBIE",
    "SAMANTHA": "SAM", "VICTORIA": "VICKY", "CHRISTINE": "CHRIS", "ABIGAIL": "ABBY", "KIMBERLY": "KIM",
}
_SURNAME_BASE = (
    "SMITH JONES WILLIAMS TAYLOR BROWN DAVIES EVANS WILSON THOMAS JOHNSON ROBERTS ROBINSON "
    "THOMPSON WRIGHT WALKER WHITE EDWARDS HUGHES GREEN HALL LEWIS HARRIS CLARKE PATEL JACKSON "
    "WOOD TURNER MARTIN COOPER HILL WARD MORRIS MOORE CLARK LEE KING BAKER HARRISON MORGAN "
    "ALLEN JAMES SCOTT PHILLIPS WATSON DAVIS PARKER PRICE BENNETT YOUNG GRIFFITHS MITCHELL "
    "KELLY COOK CARTER RICHARDSON BAILEY COLLINS BELL SHAW MURPHY MILLER COX RICHARDS KHAN "
    "MARSHALL ANDERSON SIMPSON ELLIS ADAMS SINGH BEGUM WILKINSON FOSTER CHAPMAN POWELL WEBB "
    "ROGERS GRAY MASON ALI HUNT HUSSAIN CAMPBELL MATTHEWS OWEN PALMER HOLMES MILLS BARNES "
    "KNIGHT LLOYD BUTLER RUSSELL BARKER FISHER STEVENS JENKINS MURRAY DIXON HARVEY OKAFOR "
    "MENSAH NGUYEN CHEN WANG KOWALSKI NOWAK AHMED RAHMAN"
).split()
_SYL_A = (
    "AB ASH BRA CAR DAL ELM FAR GOL HAR KIN LAN MAR NOR PEN RAV SOM THOR WEL WIN YAR BAL CRO "
    "DUN FEN GAR HOL KEL LOR MEL NEW OAK PRES RED SAL TAL UP VER WAL WES BIR"
).split()
_SYL_M = "ER IN OL AN EL OW IS AR EN UM".split()
_SYL_B = (
    "BY DALE FORD HAM LEY TON WELL WOOD BROOK FIELD STEAD WICK MORE HURST COMBE SON WORTH "
    "LAND SHAW CROFT GATE BURN MAN DEN TREE"
).split()
_STREETS = "HIGH STATION CHURCH PARK VICTORIA GREEN MANOR KINGS QUEENS MILL NEW SCHOOL".split()
_STREET_TYPES = "STREET ROAD LANE AVENUE CLOSE WAY DRIVE".split()
_AREAS = "B BS CF E L LS M N NE NG S SE SW W WF YO HU CV LE DN".split()
_ETHNIC = ("White", "Black", "Asian", "Mixed", "Other")
_ETHNIC_P = (0.75, 0.08, 0.10, 0.04, 0.03)
_KEYBOARD = "QWERTYUIOPASDFGHJKLZXCVBNM"

LINKAGE_COLUMNS = (
    "record_id", "source_dataset", "forename", "middle_names", "surname", "dob", "sex",
    "postcode", "address", "pnc", "cro",
)


def _zipf_weights(n: int, a: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """Zipf-Mandelbrot weights: 1 / (rank + offset)^a."""
    w = 1.0 / (np.arange(1, n + 1) + offset) ** a
    return w / w.sum()


def _surname_pool() -> list[str]:
    made = [a + b for a in _SYL_A for b in _SYL_B] + [a + m + b for a in _SYL_A for m in _SYL_M for b in _SYL_B]
    return list(dict.fromkeys(_SURNAME_BASE + made))


def _postcode_pool(rng: np.random.Generator, n: int) -> list[str]:
    out = set()
    while len(out) < n:
        area = _AREAS[rng.integers(len(_AREAS))]
        out.add(f"{area}{rng.integers(1, 30)} {rng.integers(0, 10)}"
                f"{_KEYBOARD[rng.integers(26)]}{_KEYBOARD[rng.integers(26)]}")
    return sorted(out)


def make_people(n_people: int, seed: int = 0) -> pl.DataFrame:
    """One row per true person (the truth)."""
    rng = np.random.default_rng(seed)
    sex = np.where(rng.random(n_people) < 0.5, "M", "F")
    male_idx = rng.choice(len(_MALE), n_people, p=_zipf_weights(len(_MALE), 1.0, 5))
    female_idx = rng.choice(len(_FEMALE), n_people, p=_zipf_weights(len(_FEMALE), 1.0, 5))
    forename = np.where(sex == "M", np.array(_MALE)[male_idx], np.array(_FEMALE)[female_idx])
    mid1 = np.where(sex == "M", np.array(_MALE)[rng.permutation(male_idx)],
                    np.array(_FEMALE)[rng.permutation(female_idx)])
    mid2 = np.where(sex == "M", np.array(_MALE)[rng.permutation(male_idx)],
                    np.array(_FEMALE)[rng.permutation(female_idx)])
    n_mid = rng.choice(3, n_people, p=[0.35, 0.5, 0.15])
    middle = np.where(n_mid == 0, None, np.where(n_mid == 1, mid1, np.char.add(np.char.add(mid1.astype(str), " "), mid2.astype(str))))
    surnames = _surname_pool()
    surname = np.array(surnames)[rng.choice(len(surnames), n_people, p=_zipf_weights(len(surnames), 1.0, 10))]
    start = dt.date(1940, 1, 1).toordinal()
    dob_ord = rng.integers(start, dt.date(2006, 12, 31).toordinal(), n_people)
    pcs = _postcode_pool(rng, max(200, n_people // 3))
    postcode = np.array(pcs)[rng.integers(0, len(pcs), n_people)]
    address = [f"{h} {_STREETS[s]} {_STREET_TYPES[t]}" for h, s, t in zip(
        rng.integers(1, 200, n_people), rng.integers(0, len(_STREETS), n_people),
        rng.integers(0, len(_STREET_TYPES), n_people))]
    years = rng.integers(1990, 2024, n_people)
    pnc_num = rng.integers(0, 10_000_000, n_people)
    pnc = [f"{y}/{n:07d}{_KEYBOARD[n % 26]}" for y, n in zip(years, pnc_num)]
    cro = [f"{n % 1_000_000:06d}/{y % 100:02d}{_KEYBOARD[(n // 7) % 26]}" for y, n in zip(years, pnc_num)]
    ethnic = np.array(_ETHNIC)[rng.choice(len(_ETHNIC), n_people, p=_ETHNIC_P)]
    return pl.DataFrame({
        "person_id": [f"P{i:07d}" for i in range(n_people)],
        "forename": forename, "middle_names": middle, "surname": surname,
        "dob": pl.Series(dob_ord - dt.date(1970, 1, 1).toordinal(), dtype=pl.Int32).cast(pl.Date),
        "sex": sex, "postcode": postcode, "address": address, "pnc": pnc, "cro": cro,
        "ethnic_group": ethnic,
    })


def _typo(s: str, rng: np.random.Generator) -> str:
    if not s:
        return s
    i = int(rng.integers(len(s)))
    op = int(rng.integers(4))
    c = _KEYBOARD[int(rng.integers(26))]
    if op == 0:
        return s[:i] + c + s[i + 1:]
    if op == 1 and len(s) > 3:
        return s[:i] + s[i + 1:]
    if op == 2:
        return s[:i] + c + s[i:]
    if i < len(s) - 1:
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]
    return s + c


def make_person_records(
    people: pl.DataFrame,
    seed: int = 0,
    *,
    source_dataset: str = "test",
    zipf_a: float = 2.5,
    error_scale: float = 1.0,
    dob_missing: float = 0.02,
    postcode_missing: float = 0.05,
    pnc_missing: float = 0.1,
    cro_missing: float = 0.3,
    group_error_scale: dict[str, float] | None = None,
    id_prefix: str = "R",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Corrupted records for ``people``.

    Returns ``(records, truth)``: records follow the person-records input contract;
    truth has ``record_id``, ``person_id`` and subgroup columns (sex, ethnic_group,
    age_band) and must never be given to linkage.
    """
    rng = np.random.default_rng(seed)
    n_people = people.height
    # heavy-tailed number of records per person (1 + capped Zipf-ish)
    counts = np.minimum(rng.zipf(zipf_a, n_people), 25)
    idx = np.repeat(np.arange(n_people), counts)
    n = len(idx)
    rec = people[idx]
    ge = group_error_scale or {"White": 1.0, "Black": 1.6, "Asian": 1.8, "Mixed": 1.3, "Other": 1.5}
    scale = error_scale * rec.get_column("ethnic_group").replace_strict(ge, default=1.0).to_numpy()

    def pick(rate: float, scaled: bool = True) -> np.ndarray:
        p = rate * (scale if scaled else 1.0)
        return np.flatnonzero(rng.random(n) < p)

    fore = rec.get_column("forename").to_list()
    mid = rec.get_column("middle_names").to_list()
    sur = rec.get_column("surname").to_list()
    sex = rec.get_column("sex").to_list()
    dob = rec.get_column("dob").to_list()
    pc = rec.get_column("postcode").to_list()
    addr = rec.get_column("address").to_list()
    pnc = rec.get_column("pnc").to_list()
    cro = rec.get_column("cro").to_list()

    for i in pick(0.04):
        fore[i] = _typo(fore[i], rng)
    for i in pick(0.03):
        fore[i] = _NICKNAMES.get(fore[i], fore[i])
    for i in pick(0.04):
        sur[i] = _typo(sur[i], rng)
    surnames = _surname_pool()
    for i in pick(0.03):
        if sex[i] == "F":
            sur[i] = surnames[int(rng.integers(len(surnames)))]
    for i in pick(0.01):
        fore[i], sur[i] = sur[i], fore[i]
    for i in pick(0.02):
        if mid[i]:
            parts = mid[i].split(" ")
            fore[i], mid[i] = parts[0], " ".join(parts[1:]) or None
    for i in pick(0.2, scaled=False):
        mid[i] = None
    for i in pick(0.015):
        d = dob[i]
        if d.day <= 12 and d.day != d.month:
            dob[i] = d.replace(month=d.day, day=d.month)
    for i in pick(0.02):
        d = dob[i]
        s = d.isoformat()
        j = int(rng.choice([2, 3, 5, 6, 8, 9]))
        t = s[:j] + str(int(rng.integers(10))) + s[j + 1:]
        try:
            dob[i] = dt.date.fromisoformat(t)
        except ValueError:
            pass
    for i in pick(0.01):
        dob[i] = dob[i].replace(month=1, day=1)
    pc_pool = rec.get_column("postcode").unique().sort().to_list()  # sorted: unique() order varies between runs
    for i in pick(0.2, scaled=False):
        pc[i] = pc_pool[int(rng.integers(len(pc_pool)))]
        addr[i] = f"{int(rng.integers(1, 200))} {_STREETS[int(rng.integers(len(_STREETS)))]} ROAD"
    for i in pick(0.02):
        s = pc[i]
        j = int(rng.integers(len(s)))
        if s[j] != " ":
            pc[i] = s[:j] + (str(int(rng.integers(10))) if s[j].isdigit() else _KEYBOARD[int(rng.integers(26))]) + s[j + 1:]
    junk = ["2000/0000000Z", "1999/9999999Z", "2001/1111111A"]
    for i in pick(0.01):
        pnc[i] = junk[int(rng.integers(len(junk)))]
    for i in pick(0.01):
        pnc[i] = _typo(pnc[i], rng)
    for i in pick(0.002):
        sex[i] = "M" if sex[i] == "F" else "F"

    def blank(values: list, rate: float, scaled: bool = True) -> None:
        for i in pick(rate, scaled):
            values[i] = None

    blank(fore, 0.01)
    blank(sur, 0.005)
    blank(sex, 0.01)
    blank(dob, dob_missing)
    blank(pc, postcode_missing)
    blank(addr, postcode_missing)
    blank(pnc, pnc_missing, scaled=False)
    blank(cro, cro_missing, scaled=False)

    order = rng.permutation(n)
    record_id = np.array([f"{id_prefix}{i:08d}" for i in range(n)])
    records = pl.DataFrame({
        "record_id": record_id,
        "source_dataset": [source_dataset] * n,
        "forename": pl.Series(fore, dtype=pl.String).gather(order),
        "middle_names": pl.Series(mid, dtype=pl.String).gather(order),
        "surname": pl.Series(sur, dtype=pl.String).gather(order),
        "dob": pl.Series(dob, dtype=pl.Date).gather(order),
        "sex": pl.Series(sex, dtype=pl.String).gather(order),
        "postcode": pl.Series(pc, dtype=pl.String).gather(order),
        "address": pl.Series(addr, dtype=pl.String).gather(order),
        "pnc": pl.Series(pnc, dtype=pl.String).gather(order),
        "cro": pl.Series(cro, dtype=pl.String).gather(order),
    })
    true_dob = rec.get_column("dob").gather(order)
    age = (dt.date(2024, 1, 1) - true_dob).dt.total_days() // 365
    truth = pl.DataFrame({
        "record_id": record_id,
        "person_id": rec.get_column("person_id").gather(order),
        "sex": rec.get_column("sex").gather(order),
        "ethnic_group": rec.get_column("ethnic_group").gather(order),
        "age_band": pl.Series(age).cut([25, 40, 60], labels=["<25", "25-39", "40-59", "60+"], left_closed=True).cast(pl.String),
    })
    return records, truth


def make_dataset(
    n_people: int, seed: int = 0, *, drop: Sequence[str] = (), **kwargs
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """People -> records in one call; ``drop`` removes fields a source does not have."""
    people = make_people(n_people, seed)
    records, truth = make_person_records(people, seed + 1, **kwargs)
    return records.drop(list(drop)), truth
