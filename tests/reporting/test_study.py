"""The study's quoted numbers, in words (petseg.reporting.study)."""

from petseg.reporting.study import STUDY_AUTOENCODER, autoencoder_claim_words, inconsistency_words


def test_autoencoder_words_quote_the_study_constants() -> None:
    words = autoencoder_claim_words()
    assert f"SSIM {STUDY_AUTOENCODER['SSIM']:.2f}" in words and "cat Dice of **0.00**" in words


def test_the_ae_row_is_called_inconsistent_and_consistent_rows_are_not() -> None:
    assert "internally inconsistent" in inconsistency_words("ae_unet") and "0.25 is below its mIoU 0.33" in (
        inconsistency_words("ae_unet"))
    assert inconsistency_words("unet") == "" and inconsistency_words("sam2") == ""
