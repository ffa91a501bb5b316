"""The return math on published and hand-checked worked examples (no database). Each expected figure is derived
in the comment beside it, so it can be checked with a pencil."""

import datetime
from decimal import Decimal

import pytest

from holdings.performance.returns import (
    Day,
    NoSolution,
    _bisect,
    annualize,
    money_weighted_flows,
    simple_return,
    time_weighted,
    xirr,
)

D = Decimal
TOLERANCE = D("1e-6")


def day(n: int) -> datetime.date:
    return datetime.date(2024, 1, 1) + datetime.timedelta(days=n)


def series(*rows: tuple[str, ...]) -> list[Day]:
    """Per day from day 1 on, (value, flow) with the flow's sign saying in (+) or out (-), or (value, inflow,
    outflow) for a day with both; day 0's value is the opening."""
    days = []
    for n, (value, *flows) in enumerate(rows, start=1):
        inflow, outflow = (max(D(flows[0]), D(0)), max(-D(flows[0]), D(0))) if len(flows) == 1 else map(D, flows)
        days.append(Day(day(n), D(value), inflow, outflow))
    return days


def test_excels_xirr_example_is_reproduced() -> None:
    # Microsoft's XIRR documentation: these flows give 0.373362535 (Excel stops iterating at 1e-8; the exact root
    # is 0.37336253351...).
    flows = [
        (datetime.date(2008, 1, 1), D("-10000")),
        (datetime.date(2008, 3, 1), D("2750")),
        (datetime.date(2008, 10, 30), D("4250")),
        (datetime.date(2009, 2, 15), D("3250")),
        (datetime.date(2009, 4, 1), D("2750")),
    ]
    assert abs(xirr(flows) - D("0.373362535")) < TOLERANCE


def test_the_bracketing_fallback_finds_the_same_root_as_newton() -> None:
    points = [(0.0, -10000.0), (60 / 365, 2750.0), (303 / 365, 4250.0), (411 / 365, 3250.0), (456 / 365, 2750.0)]
    assert _bisect(points) == pytest.approx(0.3733625335, abs=1e-9)


@pytest.mark.parametrize(
    ("paid", "received", "days", "rate"),
    [
        # 100 grows to 110 in exactly 365 days: 10% a year.
        ("100", "110", 365, "0.1"),
        # 1000 grows to 1210 in 730 days: 1.1 squared, 10% a year.
        ("1000", "1210", 730, "0.1"),
        # 100 falls to 50 in a year: -50%.
        ("100", "50", 365, "-0.5"),
    ],
)
def test_xirr_of_one_payment_and_one_receipt_is_the_rate(paid: str, received: str, days: int, rate: str) -> None:
    flows = [(day(0), -D(paid)), (day(days), D(received))]
    assert abs(xirr(flows) - D(rate)) < TOLERANCE


@pytest.mark.parametrize(
    "amounts",
    [
        ["100", "50"],  # money only ever received: nothing to earn a rate on
        ["-100", "-50"],
        # -100 + 300x - 300x^2 = 0 with x = 1/(1+r) has no real root (discriminant 9 - 12 < 0).
        ["-100", "300", "-300"],
    ],
)
def test_flows_without_a_rate_raise_a_clear_error(amounts: list[str]) -> None:
    flows = [(day(365 * n), D(amount)) for n, amount in enumerate(amounts)]
    with pytest.raises(NoSolution):
        xirr(flows)


def test_a_value_that_gains_10_percent_receives_100_then_gains_5_percent() -> None:
    # 100 -> 110 (+10%); 100 deposited: 210 (+0%, the inflow counts at the day's start); -> 220.5 (+5%).
    # Time-weighted: 1.10 x 1.05 - 1 = 15.5%. Simple: gain 220.5 - 100 - 100 = 20.5 over 100 + 100 = 10.25%.
    days = series(("110", "0"), ("210", "100"), ("220.5", "0"))
    twr = time_weighted(D("100"), days)
    assert twr.cumulative == D("0.155")
    assert [d.daily for d in twr.days] == [D("0.1"), D("0"), D("0.05")]
    assert simple_return(D("100"), days) == D("0.1025")


def test_an_outflow_counts_at_the_end_of_its_day() -> None:
    # GIPS-style daily valuation: 1,000,000 -> 1,100,000 (+10%); then 200,000 withdrawn at the day's end with
    # 880,000 left: (880,000 + 200,000) / 1,100,000 - 1 = -1.8181...%; chained 1.1 x 0.98181... = 1.08: +8%.
    days = series(("1100000", "0"), ("880000", "-200000"))
    assert time_weighted(D("1000000"), days).cumulative == D("0.08")
    # Simple: gain 880,000 - 1,000,000 + 200,000 = 80,000 over 1,000,000 (no inflow) = 8%.
    assert simple_return(D("1000000"), days) == D("0.08")


def test_a_deposit_and_a_withdrawal_on_one_day_are_two_flows_not_their_net() -> None:
    # 100 at the start; 50 deposited at the day's start, 50 withdrawn at its end, 110 left: the day earned
    # (110 + 50) / (100 + 50) - 1 = 6.666...%, on the 150 invested over it. Netted into no flow at all, the same
    # day would read 110 / 100 - 1 = 10%, as if the 50 deposited had never been at work.
    days = series(("110", "50", "50"))
    assert abs(time_weighted(D("100"), days).cumulative - D(1) / D(15)) < TOLERANCE
    # Simple: gain 110 - 100 - (50 - 50) = 10 over 100 + 50 put in.
    assert abs(simple_return(D("100"), days) - D(1) / D(15)) < TOLERANCE
    assert money_weighted_flows(D("100"), days, start=day(1)) == [
        (day(0), D("-100")),
        (day(0), D("-50")),
        (day(1), D("50")),
        (day(1), D("110")),
    ]


def test_portfolio_performances_three_holding_periods_give_27_05_percent() -> None:
    # Portfolio Performance's manual, "Time-Weighted Rate of Return": 100 grows 10% to 110; 20 comes in and the
    # 130 grows 5% to 136.5; 30 goes out and the 106.5 left grows 10% to 117.15. (1.1 x 1.05 x 1.1) - 1 = 27.05%,
    # whatever the flows. In daily sub-periods the 30 leaves at the end of the day the 20 came in (136.5 + 30 is
    # the day's MVE + CFout).
    days = series(("110", "0"), ("106.5", "20", "30"), ("117.15", "0"))
    twr = time_weighted(D("100"), days)
    assert twr.cumulative == D("0.2705")
    assert [d.daily for d in twr.days] == [D("0.1"), D("0.05"), D("0.1")]
    # Simple: gain 117.15 - 100 - (20 - 30) = 27.15 over 100 + 20 put in = 22.625%.
    assert simple_return(D("100"), days) == D("0.22625")


def test_a_start_value_of_zero_starts_the_returns_on_the_first_day_with_value() -> None:
    # Nothing on day 1; 100 deposited on day 2; 110 on day 3: +10%, and the first day with a return is day 2.
    twr = time_weighted(D("0"), series(("0", "0"), ("100", "100"), ("110", "0")))
    assert twr.cumulative == D("0.1")
    assert twr.first_day == day(2)
    assert twr.days[0].daily is None


def test_a_portfolio_sold_out_to_zero_and_funded_again_chains_both_lives() -> None:
    # 100 -> 120 (+20%); all 120 withdrawn (0%); a day at zero (no return); 50 deposited (0%); 50 -> 55 (+10%).
    # 1.2 x 1.1 - 1 = 32%.
    twr = time_weighted(D("100"), series(("120", "0"), ("0", "-120"), ("0", "0"), ("50", "50"), ("55", "0")))
    assert twr.cumulative == D("0.32")
    assert twr.days[2].daily is None


@pytest.mark.parametrize("flow", ["-50", "100"])
def test_a_flow_on_the_last_day_is_no_gain_or_loss(flow: str) -> None:
    # 100 -> 105 (+5%); on the last day money moves and nothing else does: that day's return is 0, the period's 5%.
    days = series(("105", "0"), (str(105 + int(flow)), flow))
    assert time_weighted(D("100"), days).cumulative == D("0.05")


def test_money_going_out_on_a_day_the_value_is_zero_has_no_return() -> None:
    # A fee of 10 charged on a day that starts at zero: nothing was invested over it, so no return (not -infinity);
    # 100 deposited the next day grows to 104: +4%.
    twr = time_weighted(D("0"), series(("-10", "-10"), ("90", "100"), ("93.6", "0")))
    assert twr.days[0].daily is None
    assert twr.cumulative == D("0.04")


def test_annualized_only_for_a_year_or_more() -> None:
    assert annualize(D("0.21"), 730) == D("0.1")  # 1.21 over two years: 1.1 a year
    assert annualize(D("0.1"), 365) == D("0.1")
    assert annualize(D("0.1"), 364) is None


def test_the_money_weighted_flows_pay_in_the_start_value_and_inflows_and_receive_the_end_value() -> None:
    days = series(("110", "0"), ("210", "100"), ("200", "-5"))
    assert money_weighted_flows(D("100"), days, start=day(1)) == [
        (day(0), D("-100")),
        (day(1), D("-100")),  # deposited on day 2, at its start: the end of day 1
        (day(3), D("5")),
        (day(3), D("200")),
    ]


def test_a_year_of_10_percent_with_no_flows_has_every_return_equal() -> None:
    # 100 to 110 over exactly 365 days, no flows: time-weighted, money-weighted and simple are all 10%.
    days = [Day(day(n), D("100") + D(10) * n / 365, D(0), D(0)) for n in range(1, 366)]
    twr = time_weighted(D("100"), days)
    assert abs(twr.cumulative - D("0.1")) < D("1e-20")
    assert twr.annualized is not None
    assert abs(twr.annualized - D("0.1")) < D("1e-20")
    assert abs(xirr(money_weighted_flows(D("100"), days, start=day(1))) - D("0.1")) < TOLERANCE
    assert simple_return(D("100"), days) == D("0.1")
