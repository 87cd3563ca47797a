"""RetryPolicy: delay schedules, caps, jitter, attempt counting, non-retryable errors and validation."""

import dataclasses
import math
from datetime import timedelta

import pytest

from conveyor import DefinitionError, NonRetryableError, RetryPolicy
from conveyor.definition.retry import (
    DEFAULT_COMPENSATION_RETRIES,
    LONGEST_RETRY_DELAY_SECONDS,
    NO_RETRIES,
    seconds,
)

ALMOST_ONE = 1.0 - 1e-12


# --- delay schedules -------------------------------------------------------------------------------------


def test_exponential_schedule_doubles_from_the_initial_delay():
    """The documented example waits 1 s, 2 s, then 4 s between its four attempts."""
    policy = RetryPolicy(max_retries=3, initial_delay_secs=1.0, backoff_multiplier=2.0)
    assert [policy.delay_after(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]


def test_exponential_schedule_uses_the_multiplier_given():
    """A multiplier of 3 triples each delay: 0.5, 1.5, 4.5, 13.5."""
    policy = RetryPolicy(max_retries=4, initial_delay_secs=0.5, backoff_multiplier=3.0)
    assert [policy.delay_after(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 13.5]


def test_exponential_is_the_default_backoff():
    """Without backoff= the policy is exponential with multiplier 2 and a 1 s initial delay."""
    policy = RetryPolicy()
    assert policy.backoff == "exponential"
    assert policy.backoff_multiplier == 2.0
    assert policy.initial_delay_secs == 1.0
    assert [policy.delay_after(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]


def test_multiplier_of_one_gives_a_constant_exponential_schedule():
    """backoff_multiplier=1 keeps every exponential delay equal to the initial one."""
    policy = RetryPolicy(initial_delay_secs=7.0, backoff_multiplier=1)
    assert [policy.delay_after(n) for n in (1, 2, 5)] == [7.0, 7.0, 7.0]


def test_linear_schedule_grows_by_the_initial_delay_each_time():
    """Linear backoff with a 10 s initial delay waits 10, 20, then 30 s."""
    policy = RetryPolicy(max_retries=3, initial_delay_secs=10, backoff="linear")
    assert [policy.delay_after(n) for n in (1, 2, 3)] == [10.0, 20.0, 30.0]


def test_linear_schedule_ignores_the_multiplier():
    """The multiplier plays no part in linear backoff."""
    policy = RetryPolicy(initial_delay_secs=10, backoff_multiplier=5.0, backoff="linear")
    assert [policy.delay_after(n) for n in (1, 2, 3)] == [10.0, 20.0, 30.0]


def test_fixed_schedule_waits_the_same_each_time():
    """Fixed backoff waits the initial delay after every failure, whatever the multiplier."""
    policy = RetryPolicy(max_retries=5, initial_delay_secs=3.0, backoff_multiplier=4.0, backoff="fixed")
    assert [policy.delay_after(n) for n in (1, 2, 3, 4, 5)] == [3.0] * 5


def test_delay_after_zero_or_negative_attempts_is_the_first_delay():
    """delay_after counts from one: zero or fewer attempts give the initial delay."""
    policy = RetryPolicy(initial_delay_secs=2.0, backoff_multiplier=3.0)
    assert policy.delay_after(0) == 2.0
    assert policy.delay_after(-4) == 2.0


def test_zero_initial_delay_retries_at_once():
    """An initial delay of zero gives a zero delay every time."""
    policy = RetryPolicy(initial_delay_secs=0)
    assert [policy.delay_after(n) for n in (1, 2, 3)] == [0.0, 0.0, 0.0]


# --- max_delay_secs ----------------------------------------------------------------------------------------


def test_max_delay_caps_an_exponential_schedule():
    """Delays grow 1, 2, 4, 8 and then stay at the 10 s cap."""
    policy = RetryPolicy(max_retries=8, initial_delay_secs=1.0, max_delay_secs=10.0)
    assert [policy.delay_after(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_max_delay_caps_a_linear_schedule():
    """A linear schedule of 10, 20, 30 is capped at 25."""
    policy = RetryPolicy(initial_delay_secs=10, backoff="linear", max_delay_secs=25)
    assert [policy.delay_after(n) for n in (1, 2, 3)] == [10.0, 20.0, 25.0]


def test_max_delay_below_the_initial_delay_caps_even_the_first():
    """A cap smaller than the initial delay applies from the first retry."""
    policy = RetryPolicy(initial_delay_secs=30, max_delay_secs=5, backoff="fixed")
    assert policy.delay_after(1) == 5.0


def test_max_delay_keeps_huge_attempt_counts_finite():
    """Even after many attempts a capped exponential delay is the cap, not infinity."""
    policy = RetryPolicy(initial_delay_secs=1.0, max_delay_secs=60.0)
    assert policy.delay_after(500) == 60.0


POLICY_SHAPES = [
    pytest.param({"backoff": "exponential"}, id="exponential"),
    pytest.param({"backoff": "exponential", "backoff_multiplier": 10.0}, id="exponential x10"),
    pytest.param({"backoff": "exponential", "backoff_multiplier": 1.0000001}, id="exponential x1.0000001"),
    pytest.param({"backoff": "linear"}, id="linear"),
    pytest.param({"backoff": "fixed"}, id="fixed"),
]
ATTEMPTS = [1, 2, 1_023, 1_024, 1_025, 1_026, 5_000, 10**6, 10**6 + 1, 2**63, 10**400]


@pytest.mark.parametrize("shape", POLICY_SHAPES)
@pytest.mark.parametrize("cap", [None, 60.0])
@pytest.mark.parametrize("jitter", [0.0, 0.3, 1.0])
def test_delay_after_never_raises_and_stays_finite_for_any_attempt(shape, cap, jitter):
    """Every backoff kind, with and without a cap and jitter, gives a finite delay for any attempt number
    (an exponential one overflowed a float at attempt 1,025 and raised OverflowError, even with a cap)."""
    policy = RetryPolicy(initial_delay_secs=1.5, max_delay_secs=cap, jitter=jitter, **shape)
    for attempts in ATTEMPTS:
        for random_unit in (0.0, 0.5, ALMOST_ONE):
            delay = policy.delay_after(attempts, random_unit)
            assert math.isfinite(delay)
            assert 0.0 <= delay <= (cap if cap is not None else LONGEST_RETRY_DELAY_SECONDS)


@pytest.mark.parametrize("attempts", range(1, 3_000, 7))
def test_a_capped_exponential_delay_is_the_cap_once_it_gets_there_and_never_raises(attempts):
    """Past the cap the delay is the cap, at every attempt up to thousands (attempt 1,025 raised)."""
    policy = RetryPolicy(initial_delay_secs=1.0, max_delay_secs=60.0)
    assert policy.delay_after(attempts) == min(2.0 ** min(attempts - 1, 10), 60.0)


def test_delays_grow_smoothly_up_to_the_longest_delay_without_a_cap():
    """Without a cap an exponential delay grows to LONGEST_RETRY_DELAY_SECONDS and stays there."""
    policy = RetryPolicy(initial_delay_secs=1.0)
    delays = [policy.delay_after(n) for n in range(1, 2_000)]
    assert delays == sorted(delays)
    assert delays[30] == 2.0**30
    assert delays[-1] == LONGEST_RETRY_DELAY_SECONDS
    assert (
        RetryPolicy(initial_delay_secs=1.0, backoff="linear").delay_after(10**18)
        == LONGEST_RETRY_DELAY_SECONDS
    )


def test_a_tiny_multiplier_is_not_cut_short():
    """The exact schedule is kept for a multiplier just above one, however many attempts."""
    policy = RetryPolicy(initial_delay_secs=1.0, backoff_multiplier=1.001)
    assert policy.delay_after(5_001) == pytest.approx(1.001**5_000)


def test_the_longest_delay_is_a_hundred_years_and_longer_delays_are_refused():
    """Delays past a hundred years are refused when the policy is declared; the ceiling fits a datetime."""
    assert LONGEST_RETRY_DELAY_SECONDS == 100 * 365.25 * 86_400
    for argument in ("initial_delay_secs", "max_delay_secs"):
        with pytest.raises(DefinitionError, match=f"{argument} must be at most 3,155,760,000 seconds"):
            RetryPolicy(**{argument: LONGEST_RETRY_DELAY_SECONDS * 2})
    RetryPolicy(initial_delay_secs=LONGEST_RETRY_DELAY_SECONDS, max_delay_secs=LONGEST_RETRY_DELAY_SECONDS)


def test_a_zero_initial_delay_stays_zero_at_any_attempt():
    """0 x an overflowing growth is still 0, not NaN."""
    policy = RetryPolicy(initial_delay_secs=0.0, backoff_multiplier=10.0)
    assert policy.delay_after(10**6) == 0.0


# --- jitter ------------------------------------------------------------------------------------------------


def test_no_jitter_ignores_the_random_unit():
    """Without jitter, random_unit does not change the delay."""
    policy = RetryPolicy(initial_delay_secs=4.0, backoff="fixed")
    assert policy.delay_after(1, 0.0) == 4.0
    assert policy.delay_after(1, ALMOST_ONE) == 4.0


def test_jitter_with_random_unit_zero_is_the_lower_bound():
    """random_unit 0 shrinks the delay by exactly the jitter fraction."""
    policy = RetryPolicy(initial_delay_secs=10.0, backoff="fixed", jitter=0.2)
    assert policy.delay_after(1, 0.0) == pytest.approx(8.0)


def test_jitter_with_random_unit_near_one_approaches_the_upper_bound():
    """random_unit just under 1 grows the delay by almost the jitter fraction, never beyond it."""
    policy = RetryPolicy(initial_delay_secs=10.0, backoff="fixed", jitter=0.2)
    delay = policy.delay_after(1, ALMOST_ONE)
    assert delay == pytest.approx(12.0)
    assert delay <= 12.0


def test_jitter_with_random_unit_half_leaves_the_delay_unchanged():
    """random_unit 0.5 (the default) is the middle of the jitter range."""
    policy = RetryPolicy(initial_delay_secs=1.0, jitter=0.5)
    assert policy.delay_after(3) == 4.0
    assert policy.delay_after(3, 0.5) == 4.0


@pytest.mark.parametrize("random_unit", [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, ALMOST_ONE])
@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_jitter_keeps_every_delay_within_the_jitter_fraction(attempt, random_unit):
    """Each jittered exponential delay stays within plus or minus 30 % of the un-jittered one."""
    plain = RetryPolicy(initial_delay_secs=2.0)
    jittered = RetryPolicy(initial_delay_secs=2.0, jitter=0.3)
    base = plain.delay_after(attempt)
    delay = jittered.delay_after(attempt, random_unit)
    assert base * 0.7 - 1e-9 <= delay <= base * 1.3 + 1e-9
    assert delay == pytest.approx(base * (1 + 0.3 * (2 * random_unit - 1)))


@pytest.mark.parametrize("random_unit", [0.0, 0.5, 0.75, ALMOST_ONE])
def test_jitter_never_takes_a_delay_above_the_cap(random_unit):
    """A capped delay stays at or below max_delay_secs whatever the jitter adds."""
    policy = RetryPolicy(initial_delay_secs=8.0, max_delay_secs=10.0, jitter=0.5)
    for attempt in range(1, 6):
        assert policy.delay_after(attempt, random_unit) <= 10.0


def test_jitter_on_a_capped_delay_with_random_unit_zero_goes_below_the_cap():
    """Jitter still spreads a delay sitting at the cap downwards."""
    policy = RetryPolicy(initial_delay_secs=100.0, max_delay_secs=10.0, jitter=0.5)
    assert policy.delay_after(1, 0.0) == pytest.approx(5.0)
    assert policy.delay_after(1, ALMOST_ONE) == 10.0


def test_full_jitter_with_random_unit_zero_gives_zero_delay():
    """jitter=1 with random_unit 0 retries at once, never a negative delay."""
    policy = RetryPolicy(initial_delay_secs=5.0, jitter=1.0)
    assert policy.delay_after(1, 0.0) == 0.0


# --- attempts ----------------------------------------------------------------------------------------------


def test_max_retries_three_allows_four_attempts():
    """max_retries=3 means four attempts in all."""
    policy = RetryPolicy(max_retries=3)
    assert policy.max_retries == 3
    assert policy.max_attempts == 4


def test_max_attempts_is_max_retries_plus_one():
    """max_attempts=4 is the same policy as max_retries=3."""
    policy = RetryPolicy(max_attempts=4)
    assert policy.max_retries == 3
    assert policy.max_attempts == 4
    assert policy == RetryPolicy(max_retries=3)


def test_max_attempts_one_never_retries():
    """max_attempts=1 allows no retry at all."""
    policy = RetryPolicy(max_attempts=1)
    assert policy.max_retries == 0
    assert policy.allows_retry(1) is False


def test_default_policy_has_three_retries():
    """Without max_retries or max_attempts the policy retries three times."""
    assert RetryPolicy().max_retries == 3


def test_max_retries_and_max_attempts_are_mutually_exclusive():
    """Giving both max_retries and max_attempts is refused."""
    with pytest.raises(DefinitionError, match="max_retries or max_attempts, not both"):
        RetryPolicy(max_retries=2, max_attempts=3)


@pytest.mark.parametrize(
    ("attempts_made", "allowed"), [(0, True), (1, True), (2, True), (3, True), (4, False)]
)
def test_allows_retry_counts_failed_attempts_against_max_retries(attempts_made, allowed):
    """With three retries, a retry may follow the first three failures but not the fourth."""
    assert RetryPolicy(max_retries=3).allows_retry(attempts_made) is allowed


def test_allows_retry_is_false_beyond_the_last_attempt():
    """Attempt counts past the maximum never allow a retry."""
    policy = RetryPolicy(max_retries=1)
    assert [policy.allows_retry(n) for n in (1, 2, 3, 10)] == [True, False, False, False]


def test_none_policy_never_retries():
    """RetryPolicy.none() makes the first failure final."""
    policy = RetryPolicy.none()
    assert policy.max_retries == 0
    assert policy.max_attempts == 1
    assert policy.allows_retry(1) is False
    assert policy.allows_retry(1, ValueError("x")) is False


def test_module_level_default_policies():
    """NO_RETRIES never retries; undos retry five times, 1 s apart at first, capped at a minute."""
    assert RetryPolicy(max_retries=0) == NO_RETRIES
    assert DEFAULT_COMPENSATION_RETRIES.max_retries == 5
    assert DEFAULT_COMPENSATION_RETRIES.initial_delay_secs == 1.0
    assert DEFAULT_COMPENSATION_RETRIES.max_delay_secs == 60.0
    assert [DEFAULT_COMPENSATION_RETRIES.delay_after(n) for n in (1, 6, 7, 20)] == [1.0, 32.0, 60.0, 60.0]


# --- non-retryable errors ----------------------------------------------------------------------------------


def test_non_retryable_error_type_is_never_retried():
    """An error of a listed type refuses a retry even on the first failure."""
    policy = RetryPolicy(max_retries=5, non_retryable_errors=(KeyError,))
    assert policy.allows_retry(1, KeyError("missing")) is False


def test_subclass_of_a_non_retryable_error_is_never_retried():
    """A subclass of a listed type is non-retryable too."""

    class PaymentDeclined(LookupError):
        pass

    policy = RetryPolicy(max_retries=5, non_retryable_errors=[LookupError])
    assert policy.allows_retry(1, PaymentDeclined("card")) is False
    assert policy.allows_retry(1, KeyError("k")) is False


def test_other_errors_are_retried_despite_non_retryable_errors():
    """An error of an unlisted type is retried as usual."""
    policy = RetryPolicy(max_retries=2, non_retryable_errors=(KeyError,))
    assert policy.allows_retry(1, ValueError("v")) is True
    assert policy.allows_retry(2, ValueError("v")) is True
    assert policy.allows_retry(3, ValueError("v")) is False


def test_base_class_of_a_listed_error_is_still_retried():
    """Listing a subclass does not make its base class non-retryable."""
    policy = RetryPolicy(max_retries=2, non_retryable_errors=(KeyError,))
    assert policy.allows_retry(1, LookupError("base")) is True


def test_non_retryable_errors_list_is_stored_as_a_tuple():
    """non_retryable_errors given as a list is kept as a tuple."""
    policy = RetryPolicy(non_retryable_errors=[KeyError, NonRetryableError])
    assert policy.non_retryable_errors == (KeyError, NonRetryableError)


def test_allows_retry_without_an_error_only_counts_attempts():
    """With no error given, only the attempt count matters."""
    policy = RetryPolicy(max_retries=1, non_retryable_errors=(KeyError,))
    assert policy.allows_retry(1) is True
    assert policy.allows_retry(2) is False


# --- validation --------------------------------------------------------------------------------------------


def test_negative_initial_delay_is_refused_naming_the_argument():
    """A negative initial delay raises a DefinitionError naming initial_delay_secs."""
    with pytest.raises(DefinitionError, match="initial_delay_secs must be a finite, non-negative"):
        RetryPolicy(initial_delay_secs=-1)


def test_negative_max_delay_is_refused_naming_the_argument():
    """A negative cap raises a DefinitionError naming max_delay_secs."""
    with pytest.raises(DefinitionError, match="max_delay_secs must be a finite, non-negative"):
        RetryPolicy(max_delay_secs=-0.5)


def test_negative_timedelta_delay_is_refused():
    """A negative timedelta is as wrong as a negative number."""
    with pytest.raises(DefinitionError, match="initial_delay_secs"):
        RetryPolicy(initial_delay_secs=timedelta(seconds=-3))


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_non_finite_initial_delay_is_refused(value):
    """Infinite or NaN delays are refused."""
    with pytest.raises(DefinitionError, match="initial_delay_secs must be a finite"):
        RetryPolicy(initial_delay_secs=value)


@pytest.mark.parametrize("value", ["1", True, [1]])
def test_non_numeric_initial_delay_is_refused(value):
    """A delay that is not a number or timedelta is refused with the argument's name."""
    with pytest.raises(
        DefinitionError, match="initial_delay_secs must be a number of seconds or a timedelta"
    ):
        RetryPolicy(initial_delay_secs=value)


def test_none_initial_delay_is_refused_naming_the_argument():
    """initial_delay_secs=None is refused when the policy is declared, not left to fail in delay_after."""
    with pytest.raises(DefinitionError, match="initial_delay_secs"):
        RetryPolicy(initial_delay_secs=None)  # type: ignore[arg-type]


def test_non_numeric_max_delay_is_refused():
    """A cap given as text is refused, naming max_delay_secs."""
    with pytest.raises(DefinitionError, match="max_delay_secs must be a number of seconds or a timedelta"):
        RetryPolicy(max_delay_secs="60")


def test_bad_backoff_name_is_refused_listing_the_choices():
    """An unknown backoff name raises a DefinitionError naming backoff and the valid names."""
    with pytest.raises(
        DefinitionError, match="backoff must be one of exponential, linear, fixed; got 'quad'"
    ):
        RetryPolicy(backoff="quad")


def test_jitter_above_one_is_refused():
    """jitter must be a fraction: 1.5 is refused naming jitter."""
    with pytest.raises(DefinitionError, match=r"jitter must be a fraction between 0 and 1, not 1\.5"):
        RetryPolicy(jitter=1.5)


@pytest.mark.parametrize("value", [-0.1, math.nan, "0.1"])
def test_negative_nan_or_text_jitter_is_refused(value):
    """Negative, NaN or non-numeric jitter is refused naming jitter."""
    with pytest.raises(DefinitionError, match="jitter must be a fraction"):
        RetryPolicy(jitter=value)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_jitter_bounds_zero_and_one_are_accepted(value):
    """jitter of exactly 0 and exactly 1 are valid."""
    assert RetryPolicy(jitter=value).jitter == value


@pytest.mark.parametrize("value", [0.5, 0, -2])
def test_backoff_multiplier_below_one_is_refused(value):
    """A multiplier below 1 would shrink delays, so it is refused naming backoff_multiplier."""
    with pytest.raises(DefinitionError, match="backoff_multiplier must be at least 1"):
        RetryPolicy(backoff_multiplier=value)


def test_nan_backoff_multiplier_is_refused():
    """A NaN multiplier is refused, as NaN delays are (it would make every later delay NaN)."""
    with pytest.raises(DefinitionError, match="backoff_multiplier"):
        RetryPolicy(backoff_multiplier=math.nan)


@pytest.mark.parametrize("value", [-1, 1.5, "3", True])
def test_bad_max_retries_is_refused(value):
    """max_retries must be a non-negative integer (not a bool, float or text)."""
    with pytest.raises(DefinitionError, match="max_retries must be a non-negative integer"):
        RetryPolicy(max_retries=value)


@pytest.mark.parametrize("value", [0, -1, 2.0, True])
def test_bad_max_attempts_is_refused(value):
    """max_attempts must be an integer of at least 1."""
    with pytest.raises(DefinitionError, match="max_attempts must be an integer of at least 1"):
        RetryPolicy(max_attempts=value)


@pytest.mark.parametrize("value", [ValueError("an instance"), "ValueError", int, 42])
def test_non_exception_types_in_non_retryable_errors_are_refused(value):
    """Instances, names and non-exception classes are refused naming non_retryable_errors."""
    with pytest.raises(DefinitionError, match="non_retryable_errors must hold exception types"):
        RetryPolicy(non_retryable_errors=(KeyError, value))


def test_definition_errors_carry_the_message_as_text():
    """The DefinitionError's str() is the full message."""
    with pytest.raises(DefinitionError) as caught:
        RetryPolicy(jitter=2)
    assert str(caught.value) == "jitter must be a fraction between 0 and 1, not 2"


# --- timedelta and storage ---------------------------------------------------------------------------------


def test_timedelta_is_accepted_for_the_initial_delay():
    """A timedelta initial delay is stored as float seconds."""
    policy = RetryPolicy(initial_delay_secs=timedelta(milliseconds=1500))
    assert policy.initial_delay_secs == 1.5
    assert policy.delay_after(2) == 3.0


def test_timedelta_is_accepted_for_the_max_delay():
    """A timedelta cap is stored as float seconds and caps delays."""
    policy = RetryPolicy(initial_delay_secs=30, max_delay_secs=timedelta(minutes=1))
    assert policy.max_delay_secs == 60.0
    assert policy.delay_after(3) == 60.0


def test_integer_values_are_stored_as_floats():
    """Integer delays, multiplier and jitter are normalised to floats."""
    policy = RetryPolicy(initial_delay_secs=2, backoff_multiplier=3, max_delay_secs=9, jitter=0)
    assert (policy.initial_delay_secs, policy.backoff_multiplier, policy.max_delay_secs, policy.jitter) == (
        2.0,
        3.0,
        9.0,
        0.0,
    )
    assert isinstance(policy.initial_delay_secs, float)
    assert isinstance(policy.max_delay_secs, float)


def test_policy_is_frozen():
    """A RetryPolicy cannot be changed once made."""
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_retries = 10  # type: ignore[misc]


def test_equal_policies_compare_and_hash_equal():
    """Two policies built from the same values are equal and hash alike."""
    one = RetryPolicy(max_retries=2, initial_delay_secs=timedelta(seconds=5), jitter=0.1)
    two = RetryPolicy(max_retries=2, initial_delay_secs=5.0, jitter=0.1)
    assert one == two
    assert hash(one) == hash(two)
    assert one != RetryPolicy(max_retries=2, initial_delay_secs=5.0, jitter=0.2)


def test_seconds_helper_converts_and_names_the_argument():
    """seconds() returns None for None, floats for numbers and timedeltas, and names what in errors."""
    assert seconds(None, what="x") is None
    assert seconds(3, what="x") == 3.0
    assert seconds(timedelta(minutes=2), what="x") == 120.0
    with pytest.raises(DefinitionError, match=r"^the_thing must be a finite, non-negative"):
        seconds(-1, what="the_thing")
