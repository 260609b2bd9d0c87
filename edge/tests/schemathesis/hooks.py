"""Schemathesis hooks for the edge's conformance test
(edge/tests/openapi_conformance.rs): the one rule of the document no JSON
Schema keyword states, a license key's check symbol, named by its format
`license-key`. Keys generated for it are well formed, in the spellings the
parser forgives (lower case, no dashes, spaces)."""

import schemathesis
from hypothesis import strategies as st

# Crockford base32, as shared/src/key.rs.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def check_symbol(values):
    """Luhn mod 32 over the data symbols' values (key.rs `check_symbol`)."""
    total = 0
    for i, value in enumerate(reversed(values)):
        if i % 2 == 0:
            value *= 2
            value = value // 32 + value % 32
        total += value
    return (32 - total % 32) % 32


@st.composite
def license_keys(draw):
    data = draw(st.lists(st.integers(0, 31), min_size=24, max_size=24))
    symbols = "".join(ALPHABET[v] for v in data + [check_symbol(data)])
    key = "-".join(symbols[i : i + 5] for i in range(0, 25, 5))
    spell = draw(st.sampled_from([str, str.lower, lambda k: k.replace("-", ""), lambda k: k.replace("-", " ")]))
    return spell(key)


schemathesis.openapi.format("license-key", license_keys())
