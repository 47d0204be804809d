"""md_text: a user's name in Markdown renders as itself, never as markup."""

from cxrssl.report.markdown import md_text


def test_a_name_makes_no_link_image_cell_break_or_html():
    text = md_text("[click](javascript:alert(1)) ![i](http://e/x.png) a|b <img src=x> `x`")
    assert "](" not in text and "<" not in text and "`" not in text and "|" not in text.replace("\\|", "")


def test_cxrssl_own_interval_brackets_stay_readable():
    assert md_text("96.6 [95.0–98.0]") == "96.6 [95.0–98.0]"
