"""MailDateFormat.parse of JavaMail 1.4: a lenient RFC 822 date parser with calendar rollover."""

from __future__ import annotations


class _Soft(Exception):
    """java.text.ParseException inside the time-zone step: the zone falls back to UTC."""


class _Hard(Exception):
    """Any other failure: the date does not parse."""


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def char(self) -> str:
        """orig[index++], with ArrayIndexOutOfBounds as a hard failure."""
        if self.i >= len(self.s):
            raise IndexError
        self.i += 1
        return self.s[self.i - 1]

    def skip_until_number(self) -> None:
        while True:
            if self.i >= len(self.s):
                raise _Soft
            if "0" <= self.s[self.i] <= "9":
                return
            self.i += 1

    def skip_white(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def skip_char(self, c: str) -> None:
        if self.i >= len(self.s) or self.s[self.i] != c:
            raise _Soft
        self.i += 1

    def skip_if_char(self, c: str) -> bool:
        if self.i >= len(self.s):
            raise _Soft
        if self.s[self.i] == c:
            self.i += 1
            return True
        return False

    def number(self) -> int:
        result = 0
        got = False
        while self.i < len(self.s) and "0" <= self.s[self.i] <= "9":
            result = _int32(result * 10 + ord(self.s[self.i]) - 48)
            got = True
            self.i += 1
        if not got:
            raise _Soft
        return result

    def month(self) -> int:
        try:
            c = self.char().lower()
            if c == "j":
                c2 = self.char().lower()
                if c2 == "a" and self.char().lower() == "n":
                    return 0
                if c2 == "u":
                    c3 = self.char().lower()
                    if c3 == "n":
                        return 5
                    if c3 == "l":
                        return 6
            elif c == "f":
                if self.char().lower() == "e" and self.char().lower() == "b":
                    return 1
            elif c == "m":
                if self.char().lower() == "a":
                    c3 = self.char().lower()
                    if c3 == "r":
                        return 2
                    if c3 == "y":
                        return 4
            elif c == "a":
                c2 = self.char().lower()
                if c2 == "p" and self.char().lower() == "r":
                    return 3
                if c2 == "u" and self.char().lower() == "g":
                    return 7
            elif c == "s":
                if self.char().lower() == "e" and self.char().lower() == "p":
                    return 8
            elif c == "o":
                if self.char().lower() == "c" and self.char().lower() == "t":
                    return 9
            elif c == "n":
                if self.char().lower() == "o" and self.char().lower() == "v":
                    return 10
            elif c == "d":
                if self.char().lower() == "e" and self.char().lower() == "c":
                    return 11
        except IndexError:
            pass
        raise _Soft

    def zone(self) -> int:
        if self.i >= len(self.s):
            raise _Soft
        if self.s[self.i] in "+-":
            switch = self.char() == "+"
            tz = self.number()
            offset = _int32(int(tz / 100) * 60 + _java_rem(tz, 100))
            return -offset if switch else offset
        try:
            c = self.char().lower()
        except IndexError:
            raise _Soft from None
        common = {"e": 300, "c": 360, "m": 420, "p": 480}
        if c == "u":
            if self.i < len(self.s) and self.char().lower() == "t":
                return 0
            raise _Soft
        if c == "g":
            if self.i < len(self.s) and self.char().lower() == "m":
                if self.i < len(self.s) and self.char().lower() == "t":
                    return 0
            raise _Soft
        if c not in common:
            raise _Soft
        result = common[c]
        # Past this point Java reads without a guard: running off the end fails the whole date.
        c = self.char().lower()
        if c == "s":
            if self.char().lower() != "t":
                raise _Soft
        elif c == "d":
            self.char()
            result -= 60
        return result


def _java_rem(a: int, b: int) -> int:
    return a - b * int(a / b)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (month 1-12)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_from_julian(year: int, month: int, day: int) -> int:
    y = year - (month <= 2)
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    jdn = 365 * y + y // 4 + doy + 1721118  # Julian day number of the date
    return jdn - 2440588


_CUTOVER_DAY = _days_from_civil(1582, 10, 15)


def _epoch_day(year: int, month0: int, day: int) -> int:
    """GregorianCalendar's lenient day count, Julian before the 1582 cutover."""
    year += month0 // 12
    month0 %= 12
    gregorian = _days_from_civil(year, month0 + 1, 1) + day - 1
    if year > 1582 or (year == 1582 and gregorian >= _CUTOVER_DAY):
        return gregorian
    return _days_from_julian(year, month0 + 1, 1) + day - 1


def parse_date_ms(text: str) -> int | None:
    """Milliseconds since the epoch, or None where JavaMail's getSentDate() gives null."""
    p = _Parser(text)
    try:
        p.skip_until_number()
        day = p.number()
        if not p.skip_if_char("-"):
            p.skip_white()
        month = p.month()
        if not p.skip_if_char("-"):
            p.skip_white()
        year = p.number()
        if year < 50:
            year += 2000
        elif year < 100:
            year += 1900
        p.skip_white()
        hours = p.number()
        p.skip_char(":")
        minutes = p.number()
        seconds = 0
        if p.skip_if_char(":"):
            seconds = p.number()
        try:
            p.skip_white()
            offset = p.zone()
        except _Soft:
            offset = 0
    except (_Soft, _Hard, IndexError):
        return None
    if not -5_000_000 < year < 5_000_000:
        return None
    days = _epoch_day(year, month, day)
    total = ((days * 24 + hours) * 60 + minutes + offset) * 60 + seconds
    return total * 1000
