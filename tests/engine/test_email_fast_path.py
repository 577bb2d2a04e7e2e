"""The fast email check agrees exactly with email_validator (syntax, no DNS)."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from datasync.engine.validation import _plain_domain, is_valid_email

ATEXT = "abcxyzABCXYZ0189_!#$%&'*+-/=?^`{|}~"
TRICKY = ATEXT + '..@@"<>[]() ,;:\\\t\x00é\u0301\u00a0\uff20'
LABELS = [
    "example",
    "com",
    "co",
    "uk",
    "xn--bcher-kva",
    "XN--BCHER-KVA",
    "a" * 63,
    "a" * 64,
    "-bad",
    "bad-",
    "ab--cd",
    "1",
    "123",
    "localhost",
    "invalid",
    "arpa",
    "local",
    "onion",
    "test",
    "example_under",
    "bücher",
    "",
]


def email_validator_accepts(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


local_parts = st.text(alphabet=TRICKY, min_size=0, max_size=70)
domains = st.lists(st.sampled_from(LABELS), min_size=0, max_size=5).map(".".join)
addresses = st.one_of(
    st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains),
    st.builds(
        lambda local, domain, tail: f"{local}@{domain}{tail}",
        local_parts,
        domains,
        st.text(alphabet=TRICKY, max_size=3),
    ),
    st.text(alphabet=TRICKY, max_size=40),
    st.emails(),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(addresses)
@example("plain.person@example.com")
@example("Info@Example.COM")
@example("a@b.c")
@example("a@b.co")
@example("a@localhost")
@example("a@example.invalid")
@example("a@foo.arpa")
@example("a@xn--bcher-kva.de")
@example("a@XN--bcher-kva.de")
@example("a@xn--zz.de")
@example(".a@example.com")
@example("a.@example.com")
@example("a..b@example.com")
@example('"a b"@example.com')
@example("a@[127.0.0.1]")
@example("Name <a@example.com>")
@example("a@example.com ")
@example(" a@example.com")
@example("a@@example.com")
@example("a@exa@mple.com")
@example("a@-example.com")
@example("a@example-.com")
@example("a@ex--ample.com")
@example("a@example.com.")
@example("a@example.123")
@example("a@ex_ample.com")
@example("é@example.com")
@example("a@bücher.de")
@example("a@example.com\u0301")
@example("a\uff20example.com")
@example("x" * 64 + "@example.com")
@example("x" * 65 + "@example.com")
@example("x" * 200 + "@" + "a" * 49 + ".com")
@example("x" * 200 + "@" + "a" * 50 + ".com")
@example("a@" + ".".join(["a" * 63] * 4))
@example("a@" + ".".join(["a" * 60] * 4) + ".com")
@example("abc@" + ".".join(["a" * 61] * 4))
def test_agrees_with_email_validator(address: str) -> None:
    assert is_valid_email(address) == email_validator_accepts(address)


def test_plain_addresses_take_the_fast_path() -> None:
    _plain_domain.cache_clear()
    for index in range(50):
        assert is_valid_email(f"person.{index}@example.org")
    info = _plain_domain.cache_info()
    assert (info.misses, info.hits) == (1, 49)
