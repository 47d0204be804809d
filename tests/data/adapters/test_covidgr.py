import pytest

from cxrssl.data.adapters import LayoutError, index_dataset


def test_p_and_n_folders_with_the_file_as_the_patient(tmp_path, make_image):
    make_image(tmp_path / "P" / "00012.jpg")
    make_image(tmp_path / "P" / "00013.jpg")
    make_image(tmp_path / "N" / "00012.jpg")  # same stem in N/: another person
    result = index_dataset("covidgr", tmp_path)
    rows = {row.path: row for row in result.manifest.rows}
    assert {path: (row.label, row.patient_id) for path, row in rows.items()} == {
        "P/00012.jpg": ("COVID-19", "P/00012"),
        "P/00013.jpg": ("COVID-19", "P/00013"),
        "N/00012.jpg": ("Normal", "N/00012"),
    }


def test_severity_table_beside_the_folders(tmp_path, make_image):
    make_image(tmp_path / "P" / "00012.jpg")
    make_image(tmp_path / "P" / "00013.jpg")
    make_image(tmp_path / "N" / "00001.jpg")
    (tmp_path / "severity.csv").write_text("Name,Severity\n00012.jpg,MILD\n00013,Normal-PCR+\n")
    rows = {row.path: row for row in index_dataset("covidgr", tmp_path).manifest.rows}
    assert rows["P/00012.jpg"].extra["severity"] == "MILD" and rows["P/00013.jpg"].extra["severity"] == "Normal-PCR+"
    assert rows["N/00001.jpg"].extra["severity"] == ""


def test_without_p_and_n_folders(tmp_path, make_image):
    make_image(tmp_path / "COVID" / "a.jpg")
    with pytest.raises(LayoutError, match=r"no P/ and N/ folders found; expected COVIDGR-1.0's folder"):
        index_dataset("covidgr", tmp_path)
