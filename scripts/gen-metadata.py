#!/usr/bin/env python3
"""Generate numbers/data/metadata.jsonl and numbers/data/calling_codes.tsv.

The data is libphonenumber's numbering-plan metadata (PhoneNumberMetadata.xml),
read from the PyPI package `phonenumbers` (Google's libphonenumber Python port,
Apache-2.0) through its own API:

  phonenumbers.SUPPORTED_REGIONS                    region codes ("GB", ...)
  phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS    calling codes of the
                                                    non-geographic entities
                                                    (800, 808, ...; id "001")
  PhoneMetadata.metadata_for_region(region)         \\ PhoneMetadata objects
  PhoneMetadata.metadata_for_nongeo_region(cc)      /  (phonemetadata.py)
  phonenumbers.COUNTRY_CODE_TO_REGION_CODE          {cc: (main region, ...)}

The package keeps the metadata as Python modules
(phonenumbers/data/region_XX.py); they are not parsed here, only loaded by the
package itself.

Usage (from the repository root, in a throwaway virtual environment):

  python3 -m venv /tmp/gen-venv
  /tmp/gen-venv/bin/pip install phonenumbers          # or phonenumbers==X.Y.Z
  /tmp/gen-venv/bin/python scripts/gen-metadata.py [--out-dir numbers/data]

Output formats (UTF-8, '\\n' line ends):

  metadata.jsonl     first line {"_metadata_version": "<phonenumbers version>"},
                     then one JSON object per territory, sorted by
                     (country_code, id); see numbers/data/README.md for fields.
  calling_codes.tsv  lines starting with '#' are comments; rows
                     country_code<TAB>region1,region2,... sorted by calling
                     code, regions in the package's order (main region first,
                     "001" for a non-geographic entity).

Strings (patterns, formats, formatting rules) are written exactly as the
package holds them: e.g. formats use Python's "\\1" group references, and
national prefix formatting rules already have $NP and $FG resolved.
"""

import argparse
import json
import os
import re
import sys
import time

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata, PhoneNumberDesc, NumberFormat

NON_GEO_ID = "001"

# The number types of PhoneMetadata for normal (not short) numbers, in the
# order of libphonenumber's phonemetadata.proto.
DESC_FIELDS = (
    "fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost",
    "personal_number", "voip", "pager", "uan", "voicemail",
    "no_international_dialling",
)
# Descs that only short-number metadata uses; must be absent here.
SHORT_ONLY_DESC_FIELDS = (
    "emergency", "short_code", "standard_rate", "carrier_specific", "sms_services",
)


def fail(msg):
    sys.exit("gen-metadata: " + msg)


def check_str(value, what, where, allow_none=True):
    if value is None:
        if not allow_none:
            fail("%s: missing %s" % (where, what))
        return None
    if not isinstance(value, str):
        fail("%s: %s is %r, not a string" % (where, what, value))
    if any(c in value for c in "\t\r\n"):
        fail("%s: %s %r has a tab or line break" % (where, what, value))
    return value


def check_bool(value, what, where):
    if not isinstance(value, bool):
        fail("%s: %s is %r, not a bool" % (where, what, value))
    return value


def check_lengths(values, what, where):
    values = list(values)
    if any(not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 17 for v in values):
        fail("%s: unexpected %s %r" % (where, what, values))
    if values != sorted(set(values)):
        fail("%s: %s %r not sorted/unique" % (where, what, values))
    return values


def desc_json(desc, where):
    if desc is None:
        return None
    if not isinstance(desc, PhoneNumberDesc):
        fail("%s: not a PhoneNumberDesc: %r" % (where, desc))
    example = check_str(desc.example_number, "example_number", where)
    if example is not None and not (example.isascii() and example.isdigit()):
        fail("%s: unexpected example_number %r" % (where, example))
    return {
        "national_number_pattern": check_str(
            desc.national_number_pattern, "national_number_pattern", where),
        "possible_length": check_lengths(desc.possible_length, "possible_length", where),
        "possible_length_local_only": check_lengths(
            desc.possible_length_local_only, "possible_length_local_only", where),
        "example_number": example,
    }


def format_json(fmt, where):
    if not isinstance(fmt, NumberFormat):
        fail("%s: not a NumberFormat: %r" % (where, fmt))
    npo = fmt.national_prefix_optional_when_formatting
    if npo is not None:
        check_bool(npo, "national_prefix_optional_when_formatting", where)
    return {
        "pattern": check_str(fmt.pattern, "pattern", where, allow_none=False),
        "format": check_str(fmt.format, "format", where, allow_none=False),
        "leading_digits_pattern": [
            check_str(p, "leading_digits_pattern", where, allow_none=False)
            for p in fmt.leading_digits_pattern
        ],
        "national_prefix_formatting_rule": check_str(
            fmt.national_prefix_formatting_rule, "national_prefix_formatting_rule", where),
        # None (not set) and False mean the same to the package: it only tests
        # the value's truth.
        "national_prefix_optional_when_formatting": npo,
        "domestic_carrier_code_formatting_rule": check_str(
            fmt.domestic_carrier_code_formatting_rule,
            "domestic_carrier_code_formatting_rule", where),
    }


def metadata_json(md, expected_id, expected_cc):
    where = "%s/%s" % (expected_id, expected_cc)
    if md is None:
        fail("%s: no metadata" % where)
    if md.id != expected_id or md.country_code != expected_cc:
        fail("%s: metadata says id=%r country_code=%r" % (where, md.id, md.country_code))
    if md.short_data:
        fail("%s: got short-number metadata" % where)
    for name in SHORT_ONLY_DESC_FIELDS:
        if getattr(md, name) is not None:
            fail("%s: unexpected %s desc in normal metadata" % (where, name))
    if md.general_desc is None or md.general_desc.national_number_pattern is None:
        fail("%s: no general_desc pattern" % where)

    obj = {
        "id": md.id,
        "country_code": md.country_code,
        "main_country_for_code": check_bool(md.main_country_for_code, "main_country_for_code", where),
        "leading_digits": check_str(md.leading_digits, "leading_digits", where),
        "international_prefix": check_str(md.international_prefix, "international_prefix", where),
        "preferred_international_prefix": check_str(
            md.preferred_international_prefix, "preferred_international_prefix", where),
        "national_prefix": check_str(md.national_prefix, "national_prefix", where),
        "preferred_extn_prefix": check_str(md.preferred_extn_prefix, "preferred_extn_prefix", where),
        "national_prefix_for_parsing": check_str(
            md.national_prefix_for_parsing, "national_prefix_for_parsing", where),
        "national_prefix_transform_rule": check_str(
            md.national_prefix_transform_rule, "national_prefix_transform_rule", where),
        "same_mobile_and_fixed_line_pattern": check_bool(
            md.same_mobile_and_fixed_line_pattern, "same_mobile_and_fixed_line_pattern", where),
        "mobile_number_portable_region": check_bool(
            md.mobile_number_portable_region, "mobile_number_portable_region", where),
        "leading_zero_possible": check_bool(md.leading_zero_possible, "leading_zero_possible", where),
        "general_desc": desc_json(md.general_desc, where + " general_desc"),
    }
    for name in DESC_FIELDS:
        obj[name] = desc_json(getattr(md, name), "%s %s" % (where, name))
    obj["number_format"] = [
        format_json(f, "%s number_format[%d]" % (where, i)) for i, f in enumerate(md.number_format)]
    obj["intl_number_format"] = [
        format_json(f, "%s intl_number_format[%d]" % (where, i))
        for i, f in enumerate(md.intl_number_format)]
    return obj


def all_metadata():
    cc_to_regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
    entries = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        md = PhoneMetadata.metadata_for_region(region)
        cc = md.country_code if md is not None else None
        if cc not in cc_to_regions or region not in cc_to_regions[cc]:
            fail("region %s (calling code %r) not in COUNTRY_CODE_TO_REGION_CODE" % (region, cc))
        entries.append(metadata_json(md, region, cc))
    for cc in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        if tuple(cc_to_regions.get(cc, ())) != (NON_GEO_ID,):
            fail("non-geo calling code %d maps to %r" % (cc, cc_to_regions.get(cc)))
        entries.append(metadata_json(PhoneMetadata.metadata_for_nongeo_region(cc), NON_GEO_ID, cc))
    entries.sort(key=lambda e: (e["country_code"], e["id"]))

    # Every calling code of the package has metadata for each of its regions.
    have = {(e["country_code"], e["id"]) for e in entries}
    want = {(cc, r) for cc, regions in cc_to_regions.items() for r in regions}
    if have != want:
        fail("metadata/calling code mismatch: %r" % sorted(have ^ want))
    # Main country: exactly one per shared calling code, none otherwise
    # (the package lists it first).
    for cc, regions in cc_to_regions.items():
        mains = [e["id"] for e in entries if e["country_code"] == cc and e["main_country_for_code"]]
        if len(regions) > 1 and mains != [regions[0]]:
            fail("calling code %d: main regions %r, package order %r" % (cc, mains, regions))
        if len(regions) == 1 and mains:
            fail("calling code %d: unexpected main_country_for_code on %r" % (cc, mains))
    return entries


def calling_code_lines():
    lines = [
        "# libphonenumber calling codes from the PyPI package phonenumbers %s" % phonenumbers.__version__,
        "# Generated by scripts/gen-metadata.py; do not edit by hand.",
        "# Data: libphonenumber (https://github.com/google/libphonenumber), "
        "Copyright The Libphonenumber Authors, Apache-2.0.",
        "# Columns: country calling code<TAB>regions separated by ',' "
        "(main region first; 001 = non-geographic entity)",
    ]
    for cc in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[cc]
        if not isinstance(cc, int) or not 1 <= cc <= 999 or not regions:
            fail("unexpected calling code entry %r: %r" % (cc, regions))
        for r in regions:
            if not re.fullmatch(r"[A-Z]{2}|001", r):
                fail("unexpected region %r for calling code %d" % (r, cc))
        lines.append("%d\t%s" % (cc, ",".join(regions)))
    return lines


def write_text(path, text, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print("wrote %s: %d rows, %d bytes" % (path, rows, os.path.getsize(path)))


def main():
    default_out = os.path.join(
        os.path.dirname(os.path.abspath(__file__)), os.pardir, "numbers", "data")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=os.path.normpath(default_out),
                        help="directory to write into (default: numbers/data)")
    args = parser.parse_args()

    start = time.monotonic()
    print("using phonenumbers %s from %s" % (
        phonenumbers.__version__, os.path.dirname(phonenumbers.__file__)))
    entries = all_metadata()
    os.makedirs(args.out_dir, exist_ok=True)

    dump = lambda obj: json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    jsonl = [dump({"_metadata_version": phonenumbers.__version__})]
    jsonl.extend(dump(e) for e in entries)
    write_text(os.path.join(args.out_dir, "metadata.jsonl"), "\n".join(jsonl) + "\n", len(entries))

    lines = calling_code_lines()
    write_text(os.path.join(args.out_dir, "calling_codes.tsv"), "\n".join(lines) + "\n",
               sum(1 for l in lines if not l.startswith("#")))
    print("%d regions, %d non-geographic entities, %.2fs" % (
        sum(1 for e in entries if e["id"] != NON_GEO_ID),
        sum(1 for e in entries if e["id"] == NON_GEO_ID),
        time.monotonic() - start))


if __name__ == "__main__":
    main()
