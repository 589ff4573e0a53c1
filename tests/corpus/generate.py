#!/usr/bin/env python3
"""Generate the differential-test corpus of tricky RFC 5322 messages.

Every ``NN-*.eml`` file in this directory, and README.md, is written by this
script, byte-exactly and deterministically (no randomness, no timestamps), so
that messages containing invalid UTF-8, NUL bytes, control characters and
mixed line endings survive editors and tooling untouched.

    python3 tests/corpus/generate.py          # (re)write the corpus
    python3 tests/corpus/generate.py --check  # verify files on disk match

All messages use CRLF line endings, except 34 (which deliberately mixes CRLF
and bare LF).  The generated files are committed; re-run this script after
editing it and commit both.
"""

import base64
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

MESSAGES = []  # (filename, description, bytes)


def b(x):
    """str -> UTF-8 bytes; bytes pass through."""
    return x.encode("utf-8") if isinstance(x, str) else x


def crlf(x):
    """Convert every bare LF to CRLF (input must not contain CR)."""
    x = b(x)
    assert b"\r" not in x, "use raw bytes for messages containing CR"
    return x.replace(b"\n", b"\r\n")


def add(num, slug, desc, data):
    name = "%02d-%s.eml" % (num, slug)
    assert not any(n == name for n, _, _ in MESSAGES), name
    assert not any(n.startswith("%02d-" % num) for n, _, _ in MESSAGES), num
    MESSAGES.append((name, desc, data))


def std(num, subject=None, from_="Sender <sender@example.com>", extra=(),
        to="alice@example.org", mime=None):
    """Standard header block as a list of header strings/bytes.

    subject/from_ may be None to omit the header.  Header values may contain
    "\\n" to produce folded continuation lines.  mime: list of MIME headers
    (Content-Type etc.); MIME-Version is added when given.
    """
    hdrs = []
    if from_ is not None:
        hdrs.append(b"From: " + b(from_) if from_ != "" else b"From:")
    hdrs.append(b"To: " + b(to))
    if subject is not None:
        hdrs.append(b"Subject: " + b(subject) if subject != "" else b"Subject:")
    hdrs.append(b"Date: Mon, 15 Jan 2024 10:%02d:00 +0000" % num)
    hdrs.append(b"Message-ID: <corpus-%02d@example.org>" % num)
    if mime:
        hdrs.append(b"MIME-Version: 1.0")
        hdrs.extend(b(h) for h in mime)
    hdrs.extend(b(h) for h in extra)
    return hdrs


def msg(headers, body):
    """Join headers and body into a CRLF message."""
    out = b"".join(crlf(h) + b"\r\n" for h in headers)
    return out + b"\r\n" + crlf(body)


TEXT_UTF8 = ["Content-Type: text/plain; charset=utf-8",
             "Content-Transfer-Encoding: 8bit"]


def text_mime(charset):
    return ["Content-Type: text/plain; charset=%s" % charset,
            "Content-Transfer-Encoding: 8bit"]


def ew_b(text, charset, codec=None):
    raw = text.encode(codec or charset) if isinstance(text, str) else text
    return "=?%s?B?%s?=" % (charset, base64.b64encode(raw).decode("ascii"))


def ew_q(text, charset, codec=None):
    raw = text.encode(codec or charset) if isinstance(text, str) else text
    out = []
    for c in raw:
        if c == 0x20:
            out.append("_")
        elif (0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A
              or chr(c) in "!*+-/"):
            out.append(chr(c))
        else:
            out.append("=%02X" % c)
    return "=?%s?Q?%s?=" % (charset, "".join(out))


def b64body(raw):
    """base64 with 76-character lines, LF-terminated (crlf() fixes them)."""
    return base64.encodebytes(raw).decode("ascii")


def stream(seed, n):
    """Deterministic pseudo-random bytes (SHA-256 in counter mode)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%s-%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


def snippet_len(text):
    """Length of text as Dovecot's snippet generator counts it: leading
    whitespace dropped, whitespace runs collapsed to one space."""
    return len(" ".join(text.split()))


# ---------------------------------------------------------------------------
# 01-06: encoded-words in many charsets
# ---------------------------------------------------------------------------

add(1, "utf8-encoded-words-q-and-b",
    "RFC 2047 encoded-words in UTF-8, both Q and B, in From display name and Subject (mixed with plain words)",
    msg(std(1,
            from_=ew_q("José María Núñez", "UTF-8") + " <jose@example.com>",
            subject=ew_q("Café crème brûlée", "UTF-8") + " and "
            + ew_b("Grüße aus Köln — “quoted” ✓", "UTF-8"),
            mime=TEXT_UTF8),
        "Hola Alice,\n\nCafé crème brûlée — Grüße aus Köln ✓.\n"))

add(2, "latin1-latin9-windows1252-encoded-words",
    "encoded-words in ISO-8859-1 (Q), ISO-8859-15 (B, euro sign 0xA4) and Windows-1252 (Q, smart quotes 0x93/0x94, euro 0x80); body raw windows-1252",
    msg(std(2,
            from_=ew_q("François Müller", "ISO-8859-1") + " <francois@example.fr>",
            subject=ew_q("Déjà vu", "ISO-8859-1") + " "
            + ew_b("Prix: 10 € - œuvre Šárka Žižka", "ISO-8859-15", "iso8859_15")
            + " " + ew_q("“smart” quotes € – dash …", "windows-1252", "cp1252"),
            mime=text_mime("windows-1252")),
        "Déjà vu: “smart quotes” cost 10 € – n’est-ce pas… ‰ Œuvre ™\n".encode("cp1252")))

add(3, "koi8r-encoded-words",
    "KOI8-R encoded-words (B in From, Q in Subject); body raw KOI8-R 8bit",
    msg(std(3,
            from_=ew_b("Иван Петров", "KOI8-R", "koi8_r") + " <ivan@example.ru>",
            subject=ew_q("Привет, мир! Тестовое сообщение", "koi8-r", "koi8_r"),
            mime=text_mime("koi8-r")),
        "Здравствуйте, Алиса!\nЭто тестовое письмо в кодировке КОИ-8.\n".encode("koi8_r")))

add(4, "shift-jis-encoded-words",
    "Shift_JIS encoded-words (B and Q); body raw Shift_JIS 8bit containing 0x5C (backslash) trail bytes of 表/ソ",
    msg(std(4,
            from_=ew_b("山田太郎", "Shift_JIS", "shift_jis") + " <yamada@example.jp>",
            subject=ew_b("会議のお知らせ：来週の予定（重要）", "SHIFT_JIS", "shift_jis")
            + " " + ew_q("表示ソフト", "Shift_JIS", "shift_jis"),
            mime=text_mime("Shift_JIS")),
        "アリスさん\n来週の会議の表示ソフトについてお知らせします。\n".encode("shift_jis")))

add(5, "gb2312-gbk-gb18030-encoded-words",
    "GB2312 (B) and GBK (Q, GBK-only chars 喆堃) encoded-words plus a GB18030 word carrying an emoji; body raw GBK 8bit",
    msg(std(5,
            from_=ew_b("张伟", "gb2312") + " <zhangwei@example.cn>",
            subject=ew_b("你好世界：会议通知", "GB2312", "gb2312") + " "
            + ew_q("王喆与李堃", "GBK", "gbk") + " "
            + ew_b("表情😀", "GB18030", "gb18030"),
            mime=text_mime("GBK")),
        "爱丽丝你好，\n这是一封测试邮件，喆堃。\n".encode("gbk")))

add(6, "euc-kr-encoded-words",
    "EUC-KR encoded-words (B and Q) plus the ks_c_5601-1987 alias; body raw EUC-KR 8bit",
    msg(std(6,
            from_=ew_b("김철수", "EUC-KR", "euc_kr") + " <kim@example.kr>",
            subject=ew_b("안녕하세요 회의 일정 안내", "EUC-KR", "euc_kr") + " "
            + ew_q("중요", "euc-kr", "euc_kr") + " "
            + ew_b("확인", "ks_c_5601-1987", "euc_kr"),
            mime=text_mime("euc-kr")),
        "앨리스 님, 안녕하세요.\n회의 일정을 안내해 드립니다.\n".encode("euc_kr")))

# ---------------------------------------------------------------------------
# 07-08: folding
# ---------------------------------------------------------------------------

_split = "Привет мир 😀 конец".encode("utf-8")
# split in the middle of the 2-byte "и" (offset 5) and of the 4-byte emoji
_cut1, _cut2 = 5, _split.index("😀".encode()) + 2
add(7, "encoded-words-split-across-folds",
    "Subject of B and Q encoded-words on folded lines, with multi-byte UTF-8 characters split between adjacent encoded-words and a plain word in between; From display name folded between encoded-words",
    msg(std(7,
            from_=ew_q("Jürgen", "UTF-8") + "\n " + ew_q("Weiß", "UTF-8")
            + " <juergen@example.de>",
            subject=ew_b(_split[:_cut1], "UTF-8") + "\n "
            + ew_b(_split[_cut1:_cut2], "UTF-8") + "\n\t"
            + ew_q(_split[_cut2:], "UTF-8") + "\n plain\n  "
            + ew_q("naïve", "utf-8"),
            mime=TEXT_UTF8),
        "Split encoded words.\n"))

add(8, "subject-folded-three-lines-tabs-spaces",
    "Subject folded over 3 lines using a tab and spaces, with trailing whitespace before each fold and internal tabs/double spaces",
    msg(std(8,
            subject="Quarterly report:  results \n\tfor Q3\tand  Q4 (tab-folded) \n \t  final line with mixed space/tab indent",
            mime=TEXT_UTF8),
        "Folded subject.\n"))

# ---------------------------------------------------------------------------
# 09-13: raw bytes and JSON-escaping hazards in headers
# ---------------------------------------------------------------------------

add(9, "raw-utf8-from-subject",
    "raw 8-bit UTF-8 (no encoded-words) in From display name and Subject: Latin, CJK, Greek",
    msg(std(9,
            from_="Zoë Ångström-Æsir 李雷 <zoe@example.com>",
            subject="Größenänderung — naïve café 東京 Ελληνικά",
            mime=TEXT_UTF8),
        "Raw UTF-8 headers: Größenänderung — naïve café 東京 Ελληνικά.\n"))

add(10, "invalid-utf8-from-subject-body",
    "raw invalid UTF-8 in From, Subject and body: Latin-1 é (0xE9), truncated 2/3/4-byte sequences, lone continuation 0x80, 0xFF/0xFE bytes; body ends in a truncated sequence",
    msg(std(10,
            from_=b'"Ren\xe9 \x80\xff Dupont" <rene@example.fr>',
            subject=b"Caf\xe9 | trunc3 \xe2\x82 | lone \x80 cont | \xff\xfe bytes | trunc2 \xc3 | trunc4 \xf0\x9f\x98 end",
            mime=TEXT_UTF8),
        b"Caf\xe9 cr\xe8me (latin-1 bytes)\n"
        b"truncated euro \xe2\x82 here, lone continuation \x80\x80 here,\n"
        b"\xff\xfe\xff bytes, truncated emoji \xf0\x9f\x98 and 2-byte \xc3 then ascii.\n"
        b"valid \xc3\xa9 next to invalid \xe9\xc3\n"
        b"ends with truncated \xe2\x82"))

add(11, "control-chars-in-subject",
    "C0 control characters inside Subject (SOH 0x01, US 0x1F, DEL 0x7F, form feed, backspace, ESC, VT, BEL) and in the body",
    msg(std(11,
            subject=b"ctl SOH[\x01] US[\x1f] DEL[\x7f] FF[\x0c] BS[\x08] ESC[\x1b] VT[\x0b] BEL[\x07] end",
            mime=TEXT_UTF8),
        b"Body controls: SOH[\x01] US[\x1f] DEL[\x7f] FF[\x0c] BS[\x08] ESC[\x1b]\n"
        b"\x0c\n"
        b"page two after a bare form feed line\n"))

add(12, "quotes-backslashes-subject-display-name",
    "double quotes and backslashes in Subject and in a quoted display name with escaped quotes/backslash; literal \\n, \\u0041, </script> and JSON-looking text",
    msg(std(12,
            from_=r'"Doe \"The Hammer\" \\ John" <john.doe@example.com>',
            subject=r'He said "hello" \ C:\path\to\file.txt \\server\share \"escaped\" \u0041 \n \t </script> {"k":"v"} end\\',
            mime=TEXT_UTF8),
        r'Body: "quotes" \backslash\ C:\dir\ \\unc\ \"esc\" \u0000 \n {"json": "value\n"} </script><!--' + "\n"))

add(13, "u2028-u2029-subject-body",
    "raw U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR (plus U+0085 NEL) in Subject and body",
    msg(std(13,
            subject="line\u2028separator and paragraph\u2029separator and NEL\u0085end",
            mime=TEXT_UTF8),
        "First\u2028Second\u2029Third\u0085Fourth\n\u2028\u2029\nlast line\n"))

# ---------------------------------------------------------------------------
# 14-21: unusual / missing / empty / huge From and Subject
# ---------------------------------------------------------------------------

add(14, "from-group-undisclosed-recipients",
    "From is an empty group: undisclosed-recipients:;",
    msg(std(14, from_="undisclosed-recipients:;", subject="Group From (empty group)",
            mime=TEXT_UTF8),
        "From is an empty group.\n"))

add(15, "from-group-with-members",
    "From is a group with members: Friends: a@x.org, b@y.org;",
    msg(std(15, from_="Friends: a@x.org, b@y.org;", subject="Group From with members",
            mime=TEXT_UTF8),
        "From is a group with two members.\n"))

add(16, "from-empty",
    "empty From header (\"From:\" with nothing after the colon)",
    msg(std(16, from_="", subject="Empty From header", mime=TEXT_UTF8),
        "The From header is present but empty.\n"))

add(17, "from-missing",
    "no From header at all (Sender, Reply-To and Resent-From present as decoys)",
    msg(std(17, from_=None, subject="Missing From header", mime=TEXT_UTF8,
            extra=["Sender: decoy-sender@example.org",
                   "Reply-To: decoy-reply@example.org",
                   "Resent-From: decoy-resent@example.org"]),
        "There is no From header.\n"))

add(18, "subject-missing",
    "no Subject header at all (X-Subject and Thread-Topic present as decoys)",
    msg(std(18, subject=None, mime=TEXT_UTF8,
            extra=["X-Subject: decoy x-subject", "Thread-Topic: decoy thread-topic"]),
        "There is no Subject header.\n"))

add(19, "subject-empty",
    "empty Subject header (\"Subject:\" with nothing after the colon)",
    msg(std(19, subject="", mime=TEXT_UTF8),
        "The Subject header is present but empty.\n"))


def _long_subject(target):
    toks, n, i = [], 0, 0
    while n < target:
        tok = "word%04d" % i
        if i % 50 == 25:
            tok += ' "quoted" \\back é€😀'
        toks.append(tok)
        n += len(tok.encode()) + 1
        i += 1
    return " ".join(toks)


add(20, "subject-10kb-single-line",
    "a ~10 KB Subject on one physical line (ASCII words with periodic quotes, backslashes and multi-byte chars)",
    msg(std(20, subject=_long_subject(10240), mime=TEXT_UTF8),
        "Ten kilobyte single-line subject.\n"))

_lines = []
_total = 0
_i = 0
while _total < 20000:
    line = "line %03d of a very long folded subject: lorem ipsum dolor sit amet" % _i
    if _i % 40 == 7:
        line += ' "q" \\ ü'
    _lines.append(line)
    _total += len(line.encode()) + 3
    _i += 1
add(21, "subject-20kb-many-folds",
    "a ~20 KB Subject folded over %d physical lines (alternating space and tab indentation)" % len(_lines),
    msg(std(21, subject="".join(
        (("\n " if k % 2 else "\n\t") if k else "") + l for k, l in enumerate(_lines)),
        mime=TEXT_UTF8),
        "Twenty kilobyte folded subject.\n"))

# ---------------------------------------------------------------------------
# 22-30: body structure and transfer encodings
# ---------------------------------------------------------------------------

add(22, "html-only-entities-style-script",
    "text/html-only body: tags, entities (&amp; &lt; &nbsp; &#233; &#x1F600; unknown/unterminated), <title>, <style>, <script> with tag-like strings, comments",
    msg(std(22, subject="HTML only body",
            mime=["Content-Type: text/html; charset=utf-8",
                  "Content-Transfer-Encoding: 8bit"]),
        """<!DOCTYPE html>
<html><head><title>Title text should not appear</title>
<meta charset="utf-8">
<style type="text/css">body { font-family: "Arial"; } p::before { content: "\\201C"; }</style>
<script type="text/javascript">var s = "</p> not text"; if (a < b && c > d) { alert("x"); }</script>
</head>
<body>
<!-- an HTML comment that should not appear -->
<p>Fish &amp; Chips &lt;tag&gt; caf&eacute; caf&#233; smile &#x1F600; non&nbsp;breaking&nbsp;space &quot;quoted&quot; &apos;apos&apos; &#39;x&#39; &unknownentity; &amp unterminated &#0; &#xD800;</p>
<blockquote>quoted html</blockquote>
<br/>Line<br>break<div>div&nbsp;&nbsp;&nbsp;text</div>
<p>ünïcödé “quotes” and <b>bold</b><i>italic</i>adjacent</p>
</body></html>
"""))

add(23, "multipart-alternative",
    "multipart/alternative with text/plain then text/html carrying different text",
    msg(std(23, subject="multipart/alternative",
            mime=['Content-Type: multipart/alternative; boundary="alt-boundary-23"']),
        """This is a multi-part message in MIME format.

--alt-boundary-23
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

PLAIN version: Grüße, this is the text/plain alternative.

--alt-boundary-23
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 8bit

<html><body><p>HTML version: Gr&uuml;&szlig;e, this is the <b>text/html</b> alternative.</p></body></html>

--alt-boundary-23--
"""))

_pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
add(24, "multipart-mixed-attachment-first",
    "multipart/mixed whose first part is an application/pdf attachment, then the text/plain body, then a text/plain attachment",
    msg(std(24, subject="Attachment first",
            mime=['Content-Type: multipart/mixed; boundary="mixed-24"']),
        """--mixed-24
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

""" + b64body(_pdf) + """
--mixed-24
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

The real body text comes after the attachment.

--mixed-24
Content-Type: text/plain; charset=utf-8; name="notes.txt"
Content-Disposition: attachment; filename="notes.txt"
Content-Transfer-Encoding: 8bit

Attached notes.txt content, not the body.

--mixed-24--
"""))

add(25, "base64-utf8-text-body",
    "text/plain UTF-8 body in base64 (76-char lines)",
    msg(std(25, subject="base64 body",
            mime=["Content-Type: text/plain; charset=utf-8",
                  "Content-Transfer-Encoding: base64"]),
        b64body(("Base64 encoded body: naïve café, Ελληνικά, 日本語, emoji 😀.\n"
                 "Second line with \"quotes\" and \\backslash\\.\n").encode())))

add(26, "quoted-printable-soft-breaks",
    "quoted-printable body: soft line breaks, =C3=A9 sequences, a soft break splitting one UTF-8 char, =3D, =20 trailing, lowercase hex, invalid =ZZ, trailing '='",
    msg(std(26, subject="quoted-printable body",
            mime=["Content-Type: text/plain; charset=utf-8",
                  "Content-Transfer-Encoding: quoted-printable"]),
        "Caf=C3=A9 cr=C3=A8me br=C3=BBl=C3=A9e, this line is long and continues after=\n"
        " a soft line break without a newline in the decoded text. Split char: caf=C3=\n"
        "=A9 done.\n"
        "Equals sign: a=3Db, trailing space=20\n"
        "lowercase hex: caf=c3=a9, invalid escape =ZZ and =4 here.\n"
        "Tab=09separated and =E2=80=94 em dash =F0=9F=98=80 emoji.\n"
        "Last line ends with a soft break="))

add(27, "base64-latin1-body",
    "text/plain ISO-8859-1 body in base64",
    msg(std(27, subject="base64 latin-1 body",
            mime=["Content-Type: text/plain; charset=ISO-8859-1",
                  "Content-Transfer-Encoding: base64"]),
        b64body("Bonjour, voilà un café très spécial à Noël. Äpfel Öl Übermaß ß ÿ ×÷ «»\n"
                .encode("latin-1"))))

add(28, "empty-body",
    "header section, blank separator line, then no body bytes at all",
    msg(std(28, subject="Empty body", mime=TEXT_UTF8), ""))

add(29, "whitespace-only-body",
    "body consisting only of spaces, tabs and CRLF newlines",
    msg(std(29, subject="Whitespace-only body", mime=TEXT_UTF8),
        "\n \n\t\t\n   \t  \n\n\n \n"))

_big = stream(b"corpus-30", 2_200_000)
add(30, "large-3mb-base64-attachment",
    "~3 MB message: short text/plain part plus a 2.2 MB pseudo-random binary attachment in base64",
    msg(std(30, subject="Large message with a 3 MB attachment",
            mime=['Content-Type: multipart/mixed; boundary="big-30"']),
        """--big-30
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

This message carries a large attachment (≈2.2 MB binary, ≈3 MB encoded).

--big-30
Content-Type: application/octet-stream; name="random.bin"
Content-Disposition: attachment; filename="random.bin"
Content-Transfer-Encoding: base64

""" + b64body(_big) + """
--big-30--
"""))

# ---------------------------------------------------------------------------
# 31-38: scripts, layout, header-section shape, addresses
# ---------------------------------------------------------------------------

add(31, "emoji-subject-raw-and-encoded",
    "emoji in Subject raw and encoded (4-byte chars, ZWJ family/rainbow flag, skin tone, regional-indicator flag, keycap with VS16); emoji display name; emoji body",
    msg(std(31,
            from_=ew_b("🦄 Unicorn Team", "UTF-8") + " <unicorn@example.com>",
            subject="Party 🎉 family 👨\u200d👩\u200d👧\u200d👦 flag 🇩🇪 thumbs 👍🏽 "
            "rainbow 🏳\ufe0f\u200d🌈 keycap 1\ufe0f\u20e3 "
            + ew_b("🚀 Launch 👩\u200d💻", "UTF-8") + " " + ew_q("😀 grin", "UTF-8"),
            mime=TEXT_UTF8),
        "Emoji body 😀🎉 👨\u200d👩\u200d👧\u200d👦 🇩🇪 👍🏽 🏳\ufe0f\u200d🌈 1\ufe0f\u20e3 𝄞\n"))

add(32, "rtl-hebrew-arabic",
    "right-to-left Hebrew and Arabic in From/Subject/body with RLM, LRE/PDF, RLO bidi controls and Arabic-Indic digits",
    msg(std(32,
            from_="דוד כהן <david@example.co.il>",
            subject="שלום עולם \u200f— مرحبا بالعالم 123 \u202aLTR\u202c \u202eRLO\u202c",
            mime=TEXT_UTF8),
        "שלום אליס, זוהי הודעת בדיקה.\n"
        "مرحبا أليس، هذه رسالة اختبار رقم ١٢٣٤٥.\n"
        "Mixed: abc שלום def مرحبا \u202eevil.exe\u202c\n"))

_long1 = " ".join("long%04d" % i for i in range(170))   # ~1500 chars
_long2 = "x" * 5000
_long3 = "é" * 1200
add(33, "long-body-lines",
    "body lines longer than 1000 characters (1.5 K words, 5000 'x', 1200 two-byte chars)",
    msg(std(33, subject="Long body lines", mime=TEXT_UTF8),
        _long1 + "\n" + _long2 + "\n" + _long3 + "\nshort last line\n"))

add(34, "mixed-crlf-bare-lf-tabs",
    "THE bare-LF message: CRLF headers except a bare-LF-terminated and LF-folded Subject; body mixes CRLF and bare LF line endings and tabs",
    b"From: Sender <sender@example.com>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: bare LF subject\n\tfolded with LF\n"
    b"Date: Mon, 15 Jan 2024 10:34:00 +0000\r\n"
    b"Message-ID: <corpus-34@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"line1 ends CRLF\r\n"
    b"line2 ends LF\n"
    b"col1\tcol2\t\tcol4\r\n"
    b"\tleading tab, trailing tab\t\n"
    b"\n"
    b"after an LF-only blank line\r\n"
    b"\r\n"
    b"after a CRLF blank line\n"
    b"last line ends LF\n")

_recv = []
for _k in range(200):
    _recv.append(
        "Received: from relay%03d.example.net (relay%03d.example.net [192.0.2.%d])\n"
        "\tby relay%03d.example.net (Postfix) with ESMTPS id %08X\n"
        "\tfor <alice@example.org>; Mon, 15 Jan 2024 10:%02d:%02d +0000"
        % (_k + 1, _k + 1, _k % 250 + 1, _k, 0x1000 * _k + 0xABC, _k // 60, _k % 60))
add(35, "huge-header-200-received",
    "huge header section: 200 folded Received headers before From/Subject (~38 KB of headers)",
    msg(_recv + std(35, subject="Two hundred Received headers", mime=TEXT_UTF8),
        "Huge header section.\n"))

add(36, "duplicate-subject",
    "three Subject headers (first, empty, third); the first one must be used",
    msg(std(36, subject="First subject (must be used)", mime=TEXT_UTF8,
            extra=["Subject:", "Subject: Third subject (must be ignored)"]),
        "Duplicate Subject headers.\n"))

add(37, "from-comment-escaped-quotes",
    "From with leading, nested and trailing (comments) and a quoted display name containing escaped quotes, a comma and parentheses",
    msg(std(37,
            from_=r'(Leading comment) "Smith, John \"Johnny\" (Q.)" (a \(nested\) (comment)) <john.smith@example.com> (trailing comment)',
            subject="From with comments", mime=TEXT_UTF8),
        "From header with comments.\n"))

add(38, "smtputf8-local-part",
    "SMTPUTF8: non-ASCII local part and IDN domain in From (raw UTF-8), non-ASCII Cc",
    msg(std(38,
            from_="Jörg Müller <jörg.müller@bücher.example>",
            subject="SMTPUTF8 address", mime=TEXT_UTF8,
            extra=["Cc: 用户@例子.广告, δοκιμή@παράδειγμα.δοκιμή"]),
        "Non-ASCII local part in the From address.\n"))

# ---------------------------------------------------------------------------
# 39-41: snippet boundary and NULs
# ---------------------------------------------------------------------------

add(39, "snippet-boundary-emoji-surrogates",
    "body of 'a' + 250 four-byte emoji: the 200th character, the 200th byte and the 200th UTF-16 unit all fall inside a character",
    msg(std(39, subject="Snippet boundary: 4-byte chars", mime=TEXT_UTF8),
        "a" + "😀" * 250 + "\n"))

_pre = ("  Lorem  ipsum\n\n  dolor sit amet,\tconsectetur adipiscing elit, sed do "
        "eiusmod tempor incididunt ut labore et dolore magna aliqua.\r\n \t Ut enim "
        "ad minim veniam, quis ").replace("\r\n", "\n")
assert snippet_len(_pre) < 180
_pre += "nostrud"
while snippet_len(_pre) < 190:
    _pre += "x"
_pre += "éü€e\u0301"          # 2-,2-,3-byte chars and a combining acute (191..195)
_pre += "👍"                   # 196
_pre += "👨\u200d👩\u200d👧\u200d👦"  # 197..203: ZWJ sequence across char 200
assert snippet_len(_pre) == 203, snippet_len(_pre)
add(40, "snippet-boundary-combining-zwj",
    "body > 200 chars with whitespace runs to collapse before the limit and a ZWJ family emoji spanning characters 197-203 (after 2/3-byte and combining chars)",
    msg(std(40, subject="Snippet boundary: ZWJ and combining", mime=TEXT_UTF8),
        _pre + " tail text after the two hundredth character boundary.\n"))

add(41, "nul-bytes-in-body",
    "NUL bytes in the body: first body byte, mid-word, and a run of NULs",
    msg(std(41, subject="NUL bytes in body", mime=TEXT_UTF8),
        b"\x00first byte is NUL\nbefore\x00after\n\x00\x00\x00 three NULs\nend\n"))

# ---------------------------------------------------------------------------
# 42-44: broken MIME
# ---------------------------------------------------------------------------

add(42, "broken-multipart-missing-boundary",
    "multipart/mixed Content-Type without a boundary parameter (body still contains delimiter-looking lines)",
    msg(std(42, subject="Broken MIME: missing boundary",
            mime=["Content-Type: multipart/mixed"]),
        """Preamble text.
--orphan
Content-Type: text/plain; charset=utf-8

Part text that belongs to no real boundary.
--orphan--
"""))

add(43, "unknown-charset-x-unknown",
    "text/plain with charset=x-unknown and 8-bit bytes (UTF-8 and Latin-1) in the body; x-unknown encoded-word in Subject",
    msg(std(43, subject="Unknown charset " + ew_q("caf\xe9", "x-unknown", "latin-1"),
            mime=["Content-Type: text/plain; charset=x-unknown",
                  "Content-Transfer-Encoding: 8bit"]),
        b"Unknown charset body: caf\xc3\xa9 (utf-8) and caf\xe9 (latin-1).\n"))

add(44, "broken-base64",
    "Content-Transfer-Encoding: base64 with invalid characters, '=' padding mid-stream, a garbage line and a truncated final quantum",
    msg(std(44, subject="Broken MIME: bad base64",
            mime=["Content-Type: text/plain; charset=utf-8",
                  "Content-Transfer-Encoding: base64"]),
        "QnJva2VuIGJhc2U2NDog\n"        # "Broken base64: "
        "Y2Fmw6kg!!!invalid***\n"        # "café " + junk
        "SGVsbG8=V29ybGQ=\n"             # padding in the middle
        "this is not base64 at all; ###\n"
        "dHJ1bmNhdGVk4oK\n"))            # "truncated" + cut-off "€"

# ---------------------------------------------------------------------------
# 45-60: further snippet/header edge cases
# ---------------------------------------------------------------------------

add(45, "quoted-reply-lines",
    "plain-text reply whose body starts with a '>' quoted line and mixes '>'/'>>'/' >' quoted lines with new text",
    msg(std(45, subject="Re: quoted reply", mime=TEXT_UTF8),
        "> first line is quoted\n"
        "Thanks, see below.\n\n"
        "On Mon, 15 Jan 2024, Bob <bob@example.com> wrote:\n"
        "> quoted line one\n"
        ">> nested quote\n"
        " > space then gt (not a quote marker at column 0)\n"
        "Reply text after the quote.\n"))

add(46, "bom-in-body",
    "UTF-8 BOM at the start of the body and mid-body, a reversed-BOM byte sequence, and U+FEFF in the Subject",
    msg(std(46, subject="\ufeffBOM at subject start and\ufeffmiddle", mime=TEXT_UTF8),
        b"\xef\xbb\xbfBody starts with a BOM; mid\xef\xbb\xbfbom; reversed \xbf\xbb\xef bytes.\n"))

add(47, "nested-multipart-related-alternative",
    "multipart/mixed > multipart/related > multipart/alternative (plain, html) + inline image, then a PDF attachment",
    msg(std(47, subject="Nested multipart",
            mime=['Content-Type: multipart/mixed; boundary="outer-47"']),
        """--outer-47
Content-Type: multipart/related; boundary="related-47"; type="multipart/alternative"

--related-47
Content-Type: multipart/alternative; boundary="alt-47"

--alt-47
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Nested plain text, three levels deep: na=C3=AFve.

--alt-47
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<html><body><p>Nested <b>HTML</b> text: na&iuml;ve.</p><img src=3D"cid:img47"></b=
ody></html>

--alt-47--

--related-47
Content-Type: image/png
Content-ID: <img47>
Content-Disposition: inline
Content-Transfer-Encoding: base64

iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==

--related-47--

--outer-47
Content-Type: application/pdf; name="a.pdf"
Content-Disposition: attachment; filename="a.pdf"
Content-Transfer-Encoding: base64

""" + b64body(_pdf) + """
--outer-47--
"""))

add(48, "message-rfc822-attachment",
    "multipart/mixed whose first part is a message/rfc822 with its own From/Subject/body, followed by the outer text",
    msg(std(48, subject="Fwd: inner message",
            mime=['Content-Type: multipart/mixed; boundary="fwd-48"']),
        """--fwd-48
Content-Type: message/rfc822
Content-Disposition: inline

From: Inner Sender <inner@example.net>
To: bob@example.net
Subject: Inner subject (must not be used)
Date: Sun, 14 Jan 2024 09:00:00 +0000
Message-ID: <inner-48@example.net>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Inner forwarded body text.

--fwd-48
Content-Type: text/plain; charset=utf-8

Outer text after the forwarded message.

--fwd-48--
"""))

add(49, "raw-latin1-8bit-body",
    "text/plain; charset=iso-8859-1 body with raw 8-bit Latin-1 bytes (8bit transfer encoding)",
    msg(std(49, subject="Raw latin-1 body", mime=text_mime("iso-8859-1")),
        "Voilà un café très spécial à Noël: Ä Ö Ü ß ÿ « » ± ° µ ½\n".encode("latin-1")))

add(50, "header-name-case-leading-trailing-ws",
    "lowercase/mixed-case header names, no space after the colon in From, extra leading and trailing whitespace in the Subject value",
    msg([b"fRoM:Mixed Case <mixed@example.org>",
         b"to: alice@example.org",
         b"SUBJECT:   three leading spaces and trailing spaces and tab \t ",
         b"date: Mon, 15 Jan 2024 10:50:00 +0000",
         b"message-id: <corpus-50@example.org>"],
        "Header names in odd case.\n"))

add(51, "malformed-encoded-words",
    "malformed/edge encoded-words: invalid base64, unknown encoding X, lowercase charset/encoding, RFC 2231 language tag, unterminated word, word broken by a fold, empty words, word glued to text, encoded-word inside a quoted display name",
    msg(std(51,
            from_='"=?UTF-8?Q?Encoded_in_quotes?=" <q@example.com>',
            subject="=?UTF-8?B?not*valid*base64?= =?UTF-8?X?unknown_encoding?= "
            "=?utf-8?q?lower=c3=a9case?= =?UTF-8*en-US?Q?with_language?=\n"
            " =?UTF-8?Q?broken\n fold?= =??= =?UTF-8??= =?UTF-8?Q??= "
            "text=?UTF-8?Q?glued?=text =?UTF-8?Q?unterminated",
            mime=TEXT_UTF8),
        "Malformed encoded words.\n"))

add(52, "leading-dots-in-body",
    "body lines that start with '.', including a line that is a single '.' (must be dot-stuffed by the LMTP client)",
    msg(std(52, subject="Leading dots", mime=TEXT_UTF8),
        ".leading dot line\n..two dots\n.\n. dot space\nend after the lone dot\n"))

add(53, "c1-controls-unicode-specials",
    "valid UTF-8 but special code points in Subject/body: C1 controls U+0080/U+009F, NBSP, soft hyphen, ZWSP, ZWJ, U+FFFD, noncharacters U+FFFE/U+FFFF, private use, U+10FFFF, U+1D11E",
    msg(std(53,
            subject="C1[\u0080\u009f] nbsp[\u00a0] shy[\u00ad] zwsp[\u200b] zwj[\u200d] "
            "fffd[\ufffd] nonchar[\ufffe\uffff] pua[\ue000] max[\U0010ffff] clef[\U0001d11e]",
            mime=TEXT_UTF8),
        "C1[\u0080\u009f] nbsp[\u00a0] shy[\u00ad] zwsp[\u200b] fffd[\ufffd] "
        "nonchar[\ufffe\uffff] pua[\ue000] max[\U0010ffff] clef[\U0001d11e]\n"))

_bad = (b"surrogate[\xed\xa0\x80] low[\xed\xb0\x80] cesu8[\xed\xa0\xbd\xed\xb8\x80] "
        b"overlongNUL[\xc0\x80] overlong/[\xc0\xaf\xe0\x80\xaf\xf0\x80\x80\xaf] "
        b"toobig[\xf4\x90\x80\x80] 5byte[\xf8\x88\x80\x80\x80] 6byte[\xfc\x84\x80\x80\x80\x80] fe[\xfe]")
add(54, "invalid-utf8-overlong-surrogates",
    "invalid UTF-8 forms in From/Subject/body: encoded surrogates, CESU-8 pair, overlong NUL and '/', code point > U+10FFFF, 5/6-byte forms, 0xFE",
    msg(std(54,
            from_=b"Over\xc0\xafLong \xed\xa0\x80 <overlong@example.com>",
            subject=_bad, mime=TEXT_UTF8),
        _bad + b"\n"))

add(55, "whitespace-only-from-subject",
    "From and Subject whose values are only spaces and tabs",
    msg(std(55, from_=" \t ", subject="\t \t", mime=TEXT_UTF8),
        "From and Subject contain only whitespace.\n"))

add(56, "headers-only-no-separator",
    "message that ends right after the last header line: no blank separator line, no body",
    b"".join(h + b"\r\n" for h in std(56, subject="Headers only, no blank line")))

add(57, "alternative-html-first",
    "multipart/alternative with the text/html part before the text/plain part",
    msg(std(57, subject="Alternative, HTML first",
            mime=['Content-Type: multipart/alternative; boundary="alt-57"']),
        """--alt-57
Content-Type: text/html; charset=utf-8

<p>HTML part comes <i>first</i> &amp; differs.</p>

--alt-57
Content-Type: text/plain; charset=utf-8

Plain part comes second.

--alt-57--
"""))

add(58, "undeclared-8bit-body",
    "no MIME headers at all, raw 8-bit UTF-8 body (charset defaults to US-ASCII)",
    msg(std(58, subject="No MIME headers, 8-bit body"),
        "Undeclared 8-bit body: Grüße, naïve café, 東京 😀.\n"))

add(59, "header-space-before-colon",
    "obsolete syntax: whitespace between header name and colon in From and Subject",
    msg([b"From : Spaced Colon <spaced@example.org>",
         b"To: alice@example.org",
         b"Subject\t: tab before colon",
         b"Date: Mon, 15 Jan 2024 10:59:00 +0000",
         b"Message-ID: <corpus-59@example.org>"],
        "Whitespace before the header colon.\n"))

add(60, "encoded-words-with-controls-and-quotes",
    "ASCII-only raw header values whose encoded-words decode to TAB, CR, LF, NUL, quote, backslash, U+2028",
    msg(std(60,
            from_='=?UTF-8?Q?Quote=22_Back=5C_Nul=00?= <ctl@example.com>',
            subject="=?UTF-8?Q?tab=09cr=0Dlf=0Anul=00quote=22backslash=5C?= "
            + ew_b("b64\x00\r\n\"\\\u2028end", "UTF-8"),
            mime=TEXT_UTF8),
        "Encoded words that decode to control characters.\n"))


# ---------------------------------------------------------------------------

def readme():
    lines = [
        "# Differential-test message corpus",
        "",
        "Tricky RFC 5322 messages for comparing the built-in Dovecot `ox`",
        "push_notification driver with the replacement driver (From, Subject,",
        "200-character snippet, unseen count must produce byte-identical JSON).",
        "",
        "All files (and this README) are written by `generate.py`; edit the script",
        "and re-run it rather than editing the `.eml` files (`--check` verifies).",
        "Line endings are CRLF everywhere except in 34. Every message has",
        "Date/Message-ID/To: alice@example.org; 52 contains a lone `.` line, so",
        "LMTP clients must dot-stuff. `.gitattributes` keeps git from touching",
        "line endings.",
        "",
    ]
    for name, desc, data in MESSAGES:
        lines.append("- `%s` — %s (%d bytes)" % (name, desc, len(data)))
    return ("\n".join(lines) + "\n").encode("utf-8")


def main():
    check = "--check" in sys.argv[1:]
    outputs = [(n, d) for n, _, d in MESSAGES] + [("README.md", readme())]
    bad = 0
    for name, data in outputs:
        path = os.path.join(HERE, name)
        if check:
            try:
                with open(path, "rb") as f:
                    same = f.read() == data
            except FileNotFoundError:
                same = False
            if not same:
                print("differs: %s" % name)
                bad += 1
        else:
            with open(path, "wb") as f:
                f.write(data)
    if check:
        print("%d files checked, %d differ" % (len(outputs), bad))
        sys.exit(1 if bad else 0)
    total = sum(len(d) for _, d in outputs)
    print("wrote %d files, %d bytes" % (len(outputs), total))


if __name__ == "__main__":
    main()
