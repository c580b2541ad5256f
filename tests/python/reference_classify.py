#!/usr/bin/env python3
"""Reference answers of libphonenumber (PyPI `phonenumbers` 9.0.43) for phone number inputs.

    reference_classify.py [INPUT.tsv] < INPUT.tsv > ANSWERS.tsv

Run it with a Python that has exactly phonenumbers==9.0.43, e.g.

    python3 -m venv /tmp/gen-venv && /tmp/gen-venv/bin/pip install phonenumbers==9.0.43
    /tmp/gen-venv/bin/python tests/python/reference_classify.py cases.tsv

It prints the package version to stderr and refuses to run (exit status 2) with any other
version: the answers are the reference that verify-numbers must reproduce, and they change
between metadata releases.

Input: UTF-8 lines `input<TAB>region_hint` (from the file argument, or stdin). The line is split
at its last tab; a line without a tab is an input with an empty hint. Lines end with '\\n'; one
trailing '\\r' is dropped (CRLF files). An empty line is an empty input.

Output: one UTF-8 line per input line, in the same order, with 9 tab-separated columns:

    input  region_hint  valid  e164  region  type  reason  national  international

  input          the input, echoed for alignment, with tab, line feed and carriage return
                 written as the two characters \\t, \\n, \\r (backslashes are not escaped)
  region_hint    the hint as given (passed to phonenumbers.parse as None when empty)
  valid          1 or 0: phonenumbers.is_valid_number (0 when parsing failed)
  e164           format_number(E164), also for invalid numbers; empty when parsing failed
  region         region_code_for_number ("001" for non-geographic entities); empty when it is
                 None or parsing failed
  type           number_type as a PhoneNumberType name (FIXED_LINE, MOBILE,
                 FIXED_LINE_OR_MOBILE, TOLL_FREE, PREMIUM_RATE, SHARED_COST, VOIP,
                 PERSONAL_NUMBER, PAGER, UAN, VOICEMAIL, UNKNOWN); empty when parsing failed
  reason         empty when valid; when parsing failed, the NumberParseException:
                 NOT_A_NUMBER, INVALID_COUNTRY_CODE, TOO_SHORT (TOO_SHORT_AFTER_IDD and
                 TOO_SHORT_NSN) or TOO_LONG; when parsed but not valid,
                 is_possible_number_with_reason: IS_POSSIBLE and IS_POSSIBLE_LOCAL_ONLY give
                 NO_SUCH_RANGE, else INVALID_COUNTRY_CODE, TOO_SHORT, TOO_LONG or INVALID_LENGTH
  national       format_number(NATIONAL) when valid, else empty
  international  format_number(INTERNATIONAL) when valid, else empty

The formatted numbers keep what the package gives, including an extension
(e.g. "+44 20 7946 0123 x12").
"""

import sys

REQUIRED_VERSION = "9.0.43"

try:
    import phonenumbers
    from phonenumbers import (NumberParseException, PhoneNumberFormat, PhoneNumberType,
                              ValidationResult)
except ImportError as exc:  # pragma: no cover - depends on the environment
    sys.exit("reference_classify.py needs phonenumbers==%s (%s)" % (REQUIRED_VERSION, exc))

PARSE_ERRORS = {
    NumberParseException.INVALID_COUNTRY_CODE: "INVALID_COUNTRY_CODE",
    NumberParseException.NOT_A_NUMBER: "NOT_A_NUMBER",
    NumberParseException.TOO_SHORT_AFTER_IDD: "TOO_SHORT",
    NumberParseException.TOO_SHORT_NSN: "TOO_SHORT",
    NumberParseException.TOO_LONG: "TOO_LONG",
}

INVALID_REASONS = {
    ValidationResult.IS_POSSIBLE: "NO_SUCH_RANGE",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "NO_SUCH_RANGE",
    ValidationResult.INVALID_COUNTRY_CODE: "INVALID_COUNTRY_CODE",
    ValidationResult.TOO_SHORT: "TOO_SHORT",
    ValidationResult.TOO_LONG: "TOO_LONG",
    ValidationResult.INVALID_LENGTH: "INVALID_LENGTH",
}

TYPE_NAMES = {
    getattr(PhoneNumberType, name): name
    for name in ("FIXED_LINE", "MOBILE", "FIXED_LINE_OR_MOBILE", "TOLL_FREE", "PREMIUM_RATE",
                 "SHARED_COST", "VOIP", "PERSONAL_NUMBER", "PAGER", "UAN", "VOICEMAIL",
                 "UNKNOWN")
}

ESCAPES = str.maketrans({"\t": "\\t", "\n": "\\n", "\r": "\\r"})


def check_version():
    version = getattr(phonenumbers, "__version__", None)
    print("reference_classify: phonenumbers %s from %s" % (version, phonenumbers.__file__),
          file=sys.stderr)
    if version != REQUIRED_VERSION:
        print("reference_classify: refusing to run: need phonenumbers==%s, have %s"
              % (REQUIRED_VERSION, version), file=sys.stderr)
        sys.exit(2)


def classify(text, hint):
    """The 7 answer columns (valid .. international) for one input."""
    try:
        number = phonenumbers.parse(text, hint or None)
    except NumberParseException as exc:
        return ("0", "", "", "", PARSE_ERRORS[exc.error_type], "", "")
    valid = phonenumbers.is_valid_number(number)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(number) or ""
    kind = TYPE_NAMES[phonenumbers.number_type(number)]
    if valid:
        return ("1", e164, region, kind, "",
                phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL),
                phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL))
    reason = INVALID_REASONS[phonenumbers.is_possible_number_with_reason(number)]
    return ("0", e164, region, kind, reason, "", "")


def read_lines(path):
    if path is None or path == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(path, "rb") as f:
            data = f.read()
    text = data.decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the line end of the last line
    return lines


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__, file=sys.stderr)
        return 2
    check_version()
    # Keep compiled metadata patterns (answers are unchanged; only faster).
    phonenumbers.enable_pattern_cache()

    out = []
    for lineno, line in enumerate(read_lines(argv[1] if len(argv) == 2 else None), 1):
        if line.endswith("\r"):
            line = line[:-1]
        text, sep, hint = line.rpartition("\t")
        if not sep:
            text, hint = hint, ""
        try:
            answer = classify(text, hint)
        except Exception as exc:
            raise RuntimeError("line %d: input %r, hint %r: %r" % (lineno, text, hint, exc)) from exc
        for column in answer:
            if any(c in column for c in "\t\r\n"):
                raise RuntimeError("line %d: answer column %r has a tab or line break"
                                   % (lineno, column))
        out.append("\t".join((text.translate(ESCAPES), hint.translate(ESCAPES)) + answer))
    sys.stdout.buffer.write(("\n".join(out) + "\n" if out else "").encode("utf-8"))
    print("reference_classify: %d lines" % len(out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
