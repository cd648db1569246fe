"""The spend forecast: a power law in the disagreement, with a prediction interval from three points."""
import pytest

from extractor.reporting.forecast import fit_learning_curve


def test_an_exact_power_law_is_recovered():
    queries = [1000, 2000, 4000, 8000]
    fidelities = [1 - 0.4 * (q / 1000) ** -0.5 for q in queries]
    curve = fit_learning_curve(queries[:3], fidelities[:3])
    assert curve.slope == pytest.approx(-0.5)
    guess = curve.predict(8000)
    assert guess.fidelity == pytest.approx(fidelities[3])
    assert guess.low == pytest.approx(guess.fidelity, abs=1e-6) and guess.high == pytest.approx(guess.fidelity, abs=1e-6)


def test_two_points_give_a_guess_without_an_interval():
    guess = fit_learning_curve([100, 200], [0.5, 0.6]).predict(400)
    assert 0.6 < guess.fidelity < 1.0 and guess.low is None


def test_noise_widens_the_interval_around_the_guess():
    guess = fit_learning_curve([100, 200, 400, 800], [0.50, 0.66, 0.70, 0.80]).predict(1600)
    assert guess.low < guess.fidelity < guess.high <= 1.0


def test_one_point_is_no_curve():
    assert fit_learning_curve([100], [0.5]) is None
    assert fit_learning_curve([100, 100], [0.5, 0.6]) is None


def test_rounds_that_agree_exactly_on_few_images_still_give_an_interval():
    """Three rounds at 25.5% on about 50 held-out images: no zero-width interval (the sampling error remains)."""
    guess = fit_learning_curve([500, 1000, 1500], [0.255] * 3, heldout_images=[51, 51, 51]).predict(2000)
    assert guess.high - guess.low > 0.1
    exact = fit_learning_curve([500, 1000, 1500], [0.255] * 3).predict(2000)
    assert exact.high == pytest.approx(exact.low)  # without the sizes, the fit alone knows no better
