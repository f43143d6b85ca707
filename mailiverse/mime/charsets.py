"""Java charset names and decoders: which names Java 17 accepts, and how its decoders map bytes."""

from __future__ import annotations

import codecs
from collections.abc import Callable

from mailiverse.mime.errors import unsupported_encoding

#: JavaMail 1.4 ``javamail.charset.map`` MIME-to-Java entries (looked up lower-cased).
_MIME_TO_JAVA = {
    "iso-2022-cn": "ISO2022CN",
    "iso-2022-kr": "ISO2022KR",
    "utf-8": "UTF8",
    "utf8": "UTF8",
    "ja_jp.iso2022-7": "ISO2022JP",
    "ja_jp.eucjp": "EUCJIS",
    "euc-kr": "KSC5601",
    "euckr": "KSC5601",
    "us-ascii": "ISO-8859-1",
    "x-us-ascii": "ISO-8859-1",
}

# Java canonical name -> (Python codec or special marker, aliases).
_JAVA: dict[str, tuple[str, tuple[str, ...]]] = {
    "US-ASCII": (
        "ascii",
        (
            "iso-ir-6",
            "ansi_x3.4-1986",
            "iso_646.irv:1991",
            "ascii",
            "iso646-us",
            "us",
            "ibm367",
            "cp367",
            "csascii",
            "default",
            "646",
            "iso_646.irv:1983",
            "ansi_x3.4-1968",
            "ascii7",
        ),
    ),
    "ISO-8859-1": (
        "latin-1",
        (
            "iso-ir-100",
            "iso_8859-1",
            "latin1",
            "l1",
            "ibm819",
            "cp819",
            "csisolatin1",
            "819",
            "ibm-819",
            "iso8859_1",
            "iso_8859-1:1987",
            "iso_8859_1",
            "8859_1",
            "iso8859-1",
        ),
    ),
    "UTF-8": ("*utf8", ("utf8", "unicode-1-1-utf-8")),
    "UTF-16": ("*utf16", ("utf_16", "utf16", "unicode", "unicodebig")),
    "UTF-16BE": ("utf-16-be", ("utf_16be", "iso-10646-ucs-2", "x-utf-16be", "unicodebigunmarked")),
    "UTF-16LE": ("utf-16-le", ("utf_16le", "x-utf-16le", "unicodelittleunmarked")),
    "UTF-32": ("*utf32", ("utf_32", "utf32")),
    "UTF-32BE": ("utf-32-be", ("utf_32be", "x-utf-32be")),
    "UTF-32LE": ("utf-32-le", ("utf_32le", "x-utf-32le")),
    "ISO-8859-2": (
        "iso8859_2",
        (
            "iso8859_2",
            "8859_2",
            "iso-ir-101",
            "iso_8859-2",
            "iso_8859-2:1987",
            "iso8859-2",
            "latin2",
            "l2",
            "ibm912",
            "ibm-912",
            "cp912",
            "912",
            "csisolatin2",
        ),
    ),
    "ISO-8859-3": (
        "iso8859_3",
        (
            "iso8859_3",
            "8859_3",
            "iso_8859-3:1988",
            "iso-ir-109",
            "iso_8859-3",
            "iso8859-3",
            "latin3",
            "l3",
            "ibm913",
            "ibm-913",
            "cp913",
            "913",
            "csisolatin3",
        ),
    ),
    "ISO-8859-4": (
        "iso8859_4",
        (
            "iso8859_4",
            "iso8859-4",
            "8859_4",
            "iso-ir-110",
            "iso_8859-4",
            "iso_8859-4:1988",
            "latin4",
            "l4",
            "ibm914",
            "ibm-914",
            "cp914",
            "914",
            "csisolatin4",
        ),
    ),
    "ISO-8859-5": (
        "iso8859_5",
        (
            "iso8859_5",
            "8859_5",
            "iso-ir-144",
            "iso_8859-5",
            "iso_8859-5:1988",
            "iso8859-5",
            "cyrillic",
            "ibm915",
            "ibm-915",
            "cp915",
            "915",
            "csisolatincyrillic",
        ),
    ),
    "ISO-8859-6": (
        "iso8859_6",
        (
            "iso8859_6",
            "8859_6",
            "iso-ir-127",
            "iso_8859-6",
            "iso_8859-6:1987",
            "iso8859-6",
            "ecma-114",
            "asmo-708",
            "arabic",
            "ibm1089",
            "ibm-1089",
            "cp1089",
            "1089",
            "csisolatinarabic",
        ),
    ),
    "ISO-8859-7": (
        "iso8859_7",
        (
            "iso8859_7",
            "8859_7",
            "iso-ir-126",
            "iso_8859-7",
            "iso_8859-7:1987",
            "elot_928",
            "iso8859-7",
            "ecma-118",
            "greek",
            "greek8",
            "csisolatingreek",
            "sun_eu_greek",
            "ibm813",
            "ibm-813",
            "813",
            "cp813",
        ),
    ),
    "ISO-8859-8": (
        "iso8859_8",
        (
            "iso8859_8",
            "8859_8",
            "iso-ir-138",
            "iso_8859-8",
            "iso_8859-8:1988",
            "iso8859-8",
            "cp916",
            "916",
            "ibm916",
            "ibm-916",
            "hebrew",
            "csisolatinhebrew",
        ),
    ),
    "ISO-8859-9": (
        "iso8859_9",
        (
            "iso8859_9",
            "8859_9",
            "iso-ir-148",
            "iso_8859-9",
            "iso_8859-9:1989",
            "iso8859-9",
            "latin5",
            "l5",
            "ibm920",
            "ibm-920",
            "920",
            "cp920",
            "csisolatin5",
        ),
    ),
    "x-iso-8859-11": ("iso8859_11", ("iso-8859-11", "iso8859_11")),
    "ISO-8859-13": ("iso8859_13", ("iso8859_13", "8859_13", "iso_8859-13", "iso8859-13")),
    "ISO-8859-15": (
        "iso8859_15",
        (
            "iso_8859-15",
            "iso8859_15",
            "8859_15",
            "iso8859-15",
            "ibm923",
            "ibm-923",
            "cp923",
            "923",
            "latin0",
            "latin9",
            "l9",
            "csisolatin0",
            "csisolatin9",
            "iso8859_15_fdis",
        ),
    ),
    "ISO-8859-16": (
        "iso8859_16",
        ("iso-ir-226", "iso_8859-16:2001", "iso_8859-16", "iso8859_16", "latin10", "l10", "csiso885916"),
    ),
    "KOI8-R": ("koi8_r", ("koi8_r", "koi8", "cskoi8r")),
    "KOI8-U": ("koi8_u", ("koi8_u",)),
    "windows-1250": ("cp1250", ("cp1250", "cp5346")),
    "windows-1251": ("cp1251", ("cp1251", "cp5347", "ansi-1251")),
    "windows-1252": ("cp1252", ("cp1252", "cp5348", "ibm-1252", "ibm1252")),
    "windows-1253": ("cp1253", ("cp1253", "cp5349")),
    "windows-1254": ("cp1254", ("cp1254", "cp5350")),
    "windows-1255": ("cp1255", ("cp1255",)),
    "windows-1256": ("cp1256", ("cp1256",)),
    "windows-1257": ("cp1257", ("cp1257", "cp5353")),
    "windows-1258": ("cp1258", ("cp1258",)),
    "windows-31j": ("cp932", ("ms932", "windows-932", "cswindows31j")),
    "Shift_JIS": ("shift_jis", ("sjis", "shift_jis", "shift-jis", "ms_kanji", "x-sjis", "csshiftjis")),
    "EUC-JP": (
        "euc_jp",
        (
            "cseucpkdfmtjapanese",
            "x-euc-jp",
            "eucjis",
            "extended_unix_code_packed_format_for_japanese",
            "euc_jp",
            "eucjp",
            "x-eucjp",
        ),
    ),
    "ISO-2022-JP": ("*iso2022jp", ("csjisencoding", "iso2022jp", "jis", "jis_encoding", "csiso2022jp")),
    "ISO-2022-KR": ("iso2022_kr", ("iso2022kr", "csiso2022kr")),
    "EUC-KR": (
        "euc_kr",
        ("ksc5601", "euckr", "ks_c_5601-1987", "ksc5601-1987", "ksc5601_1987", "ksc_5601", "cseuckr", "5601"),
    ),
    "x-windows-949": ("cp949", ("ms949", "windows949", "windows-949", "ms_949")),
    "GB2312": ("gb2312", ("gb2312", "euc-cn", "x-euc-cn", "euccn", "euc_cn", "gb2312-80", "gb2312-1980")),
    "GBK": ("gbk", ("cp936", "windows-936")),
    "GB18030": ("gb18030", ("gb18030-2022",)),
    "Big5": ("big5", ("csbig5",)),
    "Big5-HKSCS": ("big5hkscs", ("big5hk", "big5-hkscs", "big5hkscs")),
    "x-windows-950": ("cp950", ("ms950", "windows-950")),
    "TIS-620": ("tis_620", ("tis620", "tis620.2533")),
    "x-windows-874": ("cp874", ("ms874", "ms-874", "windows-874")),
    "IBM437": ("cp437", ("cp437", "ibm437", "ibm-437", "437", "cspc8codepage437", "windows-437")),
    "IBM775": ("cp775", ("cp775", "ibm775", "ibm-775", "775")),
    "IBM850": ("cp850", ("cp850", "ibm-850", "ibm850", "850", "cspc850multilingual")),
    "IBM852": ("cp852", ("cp852", "ibm852", "ibm-852", "852", "cspcp852")),
    "IBM855": ("cp855", ("cp855", "ibm-855", "ibm855", "855", "cspcp855")),
    "IBM857": ("cp857", ("cp857", "ibm857", "ibm-857", "857", "csibm857")),
    "IBM00858": ("cp858", ("cp858", "ccsid00858", "cp00858", "858", "pc-multilingual-850+euro")),
    "IBM862": ("cp862", ("cp862", "ibm862", "ibm-862", "862", "csibm862", "cspc862latinhebrew")),
    "IBM866": ("cp866", ("cp866", "ibm866", "ibm-866", "866", "csibm866")),
    "x-IBM737": ("cp737", ("cp737", "ibm737", "ibm-737", "737")),
    "x-MacRoman": ("mac_roman", ("macroman",)),
    "x-MacCyrillic": ("mac_cyrillic", ("maccyrillic",)),
    "x-MacGreek": ("mac_greek", ("macgreek",)),
    "x-MacCentralEurope": ("mac_latin2", ("maccentraleurope",)),
    "x-MacTurkish": ("mac_turkish", ("macturkish",)),
    "x-MacIceland": ("mac_iceland", ("maciceland",)),
}

_LOOKUP: dict[str, str] = {}
for _canonical, (_codec, _aliases) in _JAVA.items():
    _LOOKUP[_canonical.lower()] = _codec
    for _alias in _aliases:
        _LOOKUP[_alias.lower()] = _codec

_LEGAL_EXTRA = set("-+:_.")


def java_charset(mime_name: str) -> str:
    """JavaMail's ``MimeUtility.javaCharset``: the Java name for a MIME charset name."""
    return _MIME_TO_JAVA.get(mime_name.lower(), mime_name)


def _legal(name: str) -> bool:
    if not name or not name[0].isascii() or not name[0].isalnum():
        return False
    return all((c.isascii() and c.isalnum()) or c in _LEGAL_EXTRA for c in name)


def codec_for(java_name: str) -> str:
    """The decoder for a Java charset name, or UnsupportedEncodingException(name)."""
    codec = _LOOKUP.get(java_name.lower()) if _legal(java_name) else None
    if codec is None:
        raise unsupported_encoding(java_name)
    return codec


def decode(data: bytes, java_name: str) -> str:
    """Decode like ``new String(bytes, charset)``: malformed input becomes U+FFFD."""
    return decode_with(data, codec_for(java_name))


def decode_with(data: bytes, codec: str, tick: Callable[[], None] | None = None) -> str:
    if codec == "*utf8":
        return java_utf8(data, tick)
    if codec == "*utf16":
        if data[:2] == b"\xff\xfe":
            return data[2:].decode("utf-16-le", "replace")
        if data[:2] == b"\xfe\xff":
            data = data[2:]
        return data.decode("utf-16-be", "replace")
    if codec == "*utf32":
        if data[:4] == b"\xff\xfe\x00\x00":
            return data[4:].decode("utf-32-le", "replace")
        if data[:4] == b"\x00\x00\xfe\xff":
            data = data[4:]
        return data.decode("utf-32-be", "replace")
    if codec == "*iso2022jp":
        try:
            text = data.decode("iso2022_jp_ext", "replace")
        except LookupError:  # pragma: no cover - every CPython has it
            text = data.decode("iso2022_jp", "replace")
        # Java's JIS X 0208 table maps 0x213D to EM DASH where CPython has HORIZONTAL BAR.
        return text.replace("\u2015", "\u2014")
    if codec == "euc_jp" and _EUCJP_TILDE in data:
        # JIS X 0212 0x2237 is FULLWIDTH TILDE in Java, '~' in CPython; 0x8F only ever leads SS3.
        return "\uff5e".join(decode_with(piece, codec, tick) for piece in data.split(_EUCJP_TILDE))
    text = codecs.decode(data, codec, "replace")
    fix = _JAVA_TABLE_FIXES.get(codec)
    return text.translate(fix) if fix is not None else text


_EUCJP_TILDE = b"\x8f\xa2\xb7"
_JIS_EM_DASH = {0x2015: 0x2014}
#: Where Java's decoding table differs from CPython's for a valid character that CPython produces
#: from exactly one byte sequence (found by decoding every 1- and 2-byte sequence with both).
_JAVA_TABLE_FIXES: dict[str, dict[int, int]] = {
    "shift_jis": _JIS_EM_DASH,
    "euc_jp": _JIS_EM_DASH,
    "big5": {0x2574: 0xFF3F},
    "gb18030": {
        0xE78D: 0xFE10,
        0xE78E: 0xFE12,
        0xE78F: 0xFE11,
        0xE790: 0xFE13,
        0xE791: 0xFE14,
        0xE792: 0xFE15,
        0xE793: 0xFE16,
        0xE794: 0xFE17,
        0xE795: 0xFE18,
        0xE796: 0xFE19,
        0xE7C7: 0x1E3F,
        0xE81E: 0x9FB4,
        0xE826: 0x9FB5,
        0xE82B: 0x9FB6,
        0xE82C: 0x9FB7,
        0xE832: 0x9FB8,
        0xE843: 0x9FB9,
        0xE854: 0x9FBA,
        0xE864: 0x9FBB,
    },
}


def java_utf8(data: bytes, tick: Callable[[], None] | None = None) -> str:
    """Java 8+'s UTF-8 decoder with REPLACE, including how many U+FFFD each fault yields."""
    view = memoryview(data)
    out: list[str] = []
    pos = 0
    n = len(data)
    while pos < n:
        try:
            out.append(codecs.utf_8_decode(view[pos:], "strict", True)[0])
            break
        except UnicodeDecodeError as e:
            i = pos + e.start
            out.append(codecs.utf_8_decode(view[pos:i], "strict", True)[0])
            out.append("\ufffd")
            pos = i + _java_malformed_length(data, i)
            if tick is not None:
                tick()
    return "".join(out)


def _java_malformed_length(data: bytes, i: int) -> int:
    """How many bytes Java's decoder replaces with one U+FFFD at a fault starting at ``i``."""
    n = len(data)
    b1 = data[i]
    if 0xE0 <= b1 <= 0xEF:
        if i + 1 >= n or not _valid3_2(b1, data[i + 1]):
            return 1
        if i + 2 >= n:
            return n - i
        if not 0x80 <= data[i + 2] <= 0xBF:
            return 2
        return 3  # an encoded surrogate
    if 0xF0 <= b1 <= 0xF4:
        if i + 1 >= n or not _valid4_2(b1, data[i + 1]):
            return 1
        if i + 2 >= n:
            return n - i
        if not 0x80 <= data[i + 2] <= 0xBF:
            return 2
        if i + 3 >= n:
            return n - i
        return 3
    return 1


def _valid3_2(b1: int, b2: int) -> bool:
    if not 0x80 <= b2 <= 0xBF:
        return False
    return not (b1 == 0xE0 and b2 < 0xA0)


def _valid4_2(b1: int, b2: int) -> bool:
    if not 0x80 <= b2 <= 0xBF:
        return False
    if b1 == 0xF0 and b2 < 0x90:
        return False
    return not (b1 == 0xF4 and b2 > 0x8F)
