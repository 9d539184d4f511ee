"""Tests of dsm.insitu against the real ISMN sample files and small built tables."""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsm import insitu
from dsm.insitu import (
    DAILY_COLUMNS,
    TIDY_COLUMNS,
    InsituFormatError,
    daily_means,
    filter_flags,
    parse_ismn_filename,
    read_ismn_archive,
    read_ismn_file,
    read_ismn_files,
    read_static_variables,
    read_station_csv,
    read_weather_csv,
    select_surface,
    station_table,
)
from dsm.storeref import StoreRef

SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"
INSITU = SHARED_DATA / "insitu"
NARBONNE = "SMOSMANIA_SMOSMANIA_Narbonne_sm_0.050000_0.050000_ThetaProbe-ML2X_20070101_20070131.stm"
HEADER_VALUES = INSITU / "ismn_header_values" / NARBONNE
CEOP_SEP = INSITU / "ismn_ceop_sep" / NARBONNE
ARM1_DIR = INSITU / "ismn_header_values_station" / "ARM-1"
ARM1 = ARM1_DIR / "COSMOS_COSMOS_ARM-1_sm_0.000000_0.190000_Cosmic-ray-Probe_20170810_20180809.stm"
ARM1_STATIC = ARM1_DIR / "COSMOS_COSMOS_ARM-1_static_variables.csv"
# Header of both Narbonne files: network, station, sensor, lat, lon, depth_from, depth_to.
NARBONNE_STATION = ("SMOSMANIA", "Narbonne", "ThetaProbe-ML2X", 43.15, 2.9567, 0.05, 0.05)

_skip_without_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared sample data folder missing: {SHARED_DATA}"
)


def needs_shared(test: Callable[..., None]) -> Callable[..., None]:
    """Mark a test as reading ../shared/data and skip it, saying why, when that is missing."""
    return pytest.mark.shared_data(_skip_without_data(test))


def _raw_records(path: Path, first_field: int) -> list[list[str]]:
    """Independent minimal parse: split on any line ending, then on whitespace."""
    lines = [ln.split() for ln in re.split(r"\r\n|\r|\n", path.read_text()) if ln.strip()]
    return [fields[first_field:] for fields in lines]


def _expected_frame(records: list[list[str]], time_fields: slice, value_at: int) -> pd.DataFrame:
    times = pd.to_datetime([" ".join(r[time_fields]) for r in records], format="%Y/%m/%d %H:%M")
    return pd.DataFrame(
        {
            "time": times.tz_localize("UTC"),
            "value": [float(r[value_at]) for r in records],
            "flag": [r[value_at + 1] for r in records],
        }
    )


def _assert_records(frame: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(frame) == len(expected)
    np.testing.assert_array_equal(frame["time"].to_numpy(), expected["time"].to_numpy())
    np.testing.assert_array_equal(frame["value"].to_numpy(), expected["value"].to_numpy())
    assert frame["flag"].tolist() == expected["flag"].tolist()


def _station(row: pd.Series) -> tuple:
    keys = ("network", "station", "sensor", "lat", "lon", "depth_from", "depth_to")
    return tuple(row[k] for k in keys)


def _tidy(rows: list[dict]) -> pd.DataFrame:
    base = {
        "network": "N", "station": "s1", "lon": 1.0, "lat": 2.0,
        "depth_from": 0.05, "depth_to": 0.05, "sensor": "probe", "flag": "G",
    }  # fmt: skip
    frame = pd.DataFrame([{**base, **row} for row in rows])
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame.loc[:, list(TIDY_COLUMNS)]


# --------------------------------------------------------------------------- real ISMN files


@needs_shared
def test_header_values_file_matches_its_text() -> None:
    frame = read_ismn_file(HEADER_VALUES)
    assert list(frame.columns) == list(TIDY_COLUMNS)
    # Line 1 (CR line endings): "SMOSMANIA  SMOSMANIA  Narbonne  43.15000  2.95670  112.00
    # 0.05  0.05 ThetaProbe-ML2X"
    row = frame.iloc[0]
    assert _station(row) == NARBONNE_STATION
    # Line 2: "2007/01/01 01:00   0.2140 U M"; last line: "2007/01/31 23:00   0.1524 U M".
    assert row["time"] == pd.Timestamp("2007-01-01 01:00", tz="UTC")
    assert (row["value"], row["flag"]) == (0.214, "U")
    assert frame["time"].iloc[-1] == pd.Timestamp("2007-01-31 23:00", tz="UTC")
    assert (frame["value"].iloc[-1], frame["flag"].iloc[-1]) == (0.1524, "U")
    # Line 23 has no provider flag: "2007/01/01 22:00   0.2121 U".
    line_23 = frame.loc[frame["time"] == pd.Timestamp("2007-01-01 22:00", tz="UTC")]
    assert line_23[["value", "flag"]].values.tolist() == [[0.2121, "U"]]
    expected = _expected_frame(_raw_records(HEADER_VALUES, 0)[1:], slice(0, 2), 2)
    _assert_records(frame, expected)
    assert len(frame) == 741
    assert frame["flag"].value_counts().to_dict() == {"U": 736, "D05": 5}
    assert str(frame["time"].dt.tz) == "UTC"


@needs_shared
def test_ceop_separated_file_matches_its_text_and_the_header_values_file() -> None:
    frame = read_ismn_file(CEOP_SEP)
    # Line 1: "2007/01/01 01:00 2007/01/01 01:00 SMOSMANIA SMOSMANIA Narbonne 43.15000 2.95670
    # 112.00 0.05 0.05 0.2140 U M"; the sensor comes from the file name only.
    assert _station(frame.iloc[0]) == NARBONNE_STATION
    expected = _expected_frame(_raw_records(CEOP_SEP, 0), slice(0, 2), 12)
    _assert_records(frame, expected)
    pd.testing.assert_frame_equal(frame, read_ismn_file(HEADER_VALUES))


@needs_shared
def test_cosmos_station_file_and_flags() -> None:
    frame = read_ismn_file(ARM1)
    # Line 1: "COSMOS  COSMOS  ARM-1  36.60540  -97.48780  322.00  0.00  0.19 Cosmic-ray-Probe"
    row = frame.iloc[0]
    assert _station(row) == ("COSMOS", "ARM-1", "Cosmic-ray-Probe", 36.6054, -97.4878, 0.0, 0.19)
    # First record "2017/08/10 00:00   0.1410 G M", last "2018/08/09 23:00   0.1100 G M".
    assert row["time"] == pd.Timestamp("2017-08-10", tz="UTC")
    assert (row["value"], row["flag"]) == (0.141, "G")
    last = frame.iloc[-1]
    assert (last["time"], last["value"]) == (pd.Timestamp("2018-08-09 23:00", tz="UTC"), 0.11)
    _assert_records(frame, _expected_frame(_raw_records(ARM1, 0)[1:], slice(0, 2), 2))
    assert frame["flag"].value_counts().to_dict() == {
        "G": 6514, "D05": 196, "D03": 137, "D03,D05": 17, "D08,D05": 1,
    }  # fmt: skip
    assert len(filter_flags(frame)) == 6514
    assert len(filter_flags(frame, keep=("G", "D03"))) == 6514 + 137
    assert len(filter_flags(frame, keep=("G", "D"))) == 6865
    # A 0-19 cm cosmic-ray footprint is not a 5 cm surface layer.
    assert select_surface(frame).empty
    assert len(select_surface(frame, max_depth=0.2)) == 6865


@needs_shared
def test_daily_means_of_real_station_match_a_plain_computation() -> None:
    good = filter_flags(select_surface(read_ismn_file(ARM1), max_depth=0.2))
    daily = daily_means(good, min_count=20)
    assert list(daily.columns) == list(DAILY_COLUMNS)
    by_day: dict[str, list[float]] = {}
    for date, _, value, flag, *_ in _raw_records(ARM1, 0)[1:]:
        if flag == "G":
            by_day.setdefault(date, []).append(float(value))
    expected = {d: np.mean(v) for d, v in by_day.items() if len(v) >= 20}
    assert len(daily) == len(expected)
    got = dict(zip(daily["time"].dt.strftime("%Y/%m/%d"), daily["value"], strict=True))
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[d] for d in expected], list(expected.values()), rtol=1e-12)
    assert daily["n_obs"].min() >= 20


@needs_shared
def test_static_variables_of_real_station() -> None:
    static = read_static_variables(ARM1_STATIC)
    assert (static["network"].iloc[0], static["station"].iloc[0]) == ("COSMOS", "ARM-1")
    top = static[(static["depth_from"] == 0.0) & (static["depth_to"] == 0.3)]
    fractions = dict(zip(top["quantity_name"], top["value"].astype(float), strict=True))
    # File lines 3-6: clay 23.00, organic carbon 1.27, sand 36.00, silt 41.00 (% weight, 0-0.30 m).
    assert fractions == {
        "saturation": 0.46, "clay fraction": 23.0, "organic carbon": 1.27,
        "sand fraction": 36.0, "silt fraction": 41.0,
    }  # fmt: skip
    insitu_oc = static[static["quantity_source_name"] == "insitu"]
    assert insitu_oc["depth_from"].isna().all()  # -99.90 in the file: depth unknown
    assert static.loc[static["quantity_name"] == "climate classification", "value"].item() == "Cfa"
    assert len(static) == 15


@needs_shared
def test_zip_archive_reports_failures_and_skips_other_variables(tmp_path: Path) -> None:
    bad_name = "SMOSMANIA_SMOSMANIA_Broken_sm_0.050000_0.050000_X_20070101_20070131.stm"
    temp_name = NARBONNE.replace("_sm_", "_ts_")
    archive = tmp_path / "ismn.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(HEADER_VALUES, f"SMOSMANIA/Narbonne/{NARBONNE}")
        zf.write(ARM1, f"COSMOS/ARM-1/{ARM1.name}")
        zf.write(ARM1_STATIC, f"COSMOS/ARM-1/{ARM1_STATIC.name}")
        zf.writestr(f"SMOSMANIA/Narbonne/{temp_name}", HEADER_VALUES.read_bytes())
        zf.writestr(f"SMOSMANIA/Broken/{bad_name}", b"this is not an ISMN file\n")
        zf.writestr("Metadata.xml", b"<xml/>")
    result = read_ismn_archive(archive)
    assert len(result.data) == 741 + 6865
    assert sorted(result.data["station"].unique()) == ["ARM-1", "Narbonne"]
    assert list(result.failures) == [f"{archive}/SMOSMANIA/Broken/{bad_name}"]
    assert "unknown format" in next(iter(result.failures.values()))
    assert result.skipped == (f"{archive}/SMOSMANIA/Narbonne/{temp_name}",)
    pd.testing.assert_frame_equal(
        result.data[result.data["station"] == "Narbonne"].reset_index(drop=True),
        read_ismn_file(HEADER_VALUES),
    )
    folder = tmp_path / "unpacked"
    zipfile.ZipFile(archive).extractall(folder)
    from_folder = read_ismn_archive(folder)
    assert len(from_folder.data) == len(result.data) and len(from_folder.failures) == 1


@needs_shared
def test_malformed_record_names_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / NARBONNE
    line_4 = b"2007/01/01 03:00   0.2140"
    text = HEADER_VALUES.read_bytes().replace(line_4, b"2007/01/01 03:00   abc", 1)
    broken.write_bytes(text)
    with pytest.raises(InsituFormatError, match=r"line 4 is not a header\+values record") as info:
        read_ismn_file(broken)
    assert info.value.path == str(broken) and str(broken) in str(info.value)
    result = read_ismn_files([broken, HEADER_VALUES, tmp_path / "missing.stm"])
    assert len(result.data) == 741
    assert set(result.failures) == {str(broken), str(tmp_path / "missing.stm")}


@needs_shared
def test_non_soil_moisture_file_is_refused(tmp_path: Path) -> None:
    temperature = tmp_path / NARBONNE.replace("_sm_", "_ts_")
    shutil.copy(HEADER_VALUES, temperature)
    with pytest.raises(InsituFormatError, match="not soil moisture"):
        read_ismn_file(temperature)


# --------------------------------------------------------------------------- formats, no data


def test_unknown_and_empty_files_raise_with_path(tmp_path: Path) -> None:
    unknown = tmp_path / "station.stm"
    unknown.write_text("time,value\n2020-01-01,0.2\n")
    with pytest.raises(InsituFormatError, match="unknown format") as info:
        read_ismn_file(unknown)
    assert str(unknown) in str(info.value)
    empty = tmp_path / "empty.stm"
    empty.write_bytes(b"\r\n\r\n")
    with pytest.raises(InsituFormatError, match="empty"):
        read_ismn_file(empty)
    with pytest.raises(InsituFormatError, match="not a readable ISMN zip"):
        read_ismn_archive(unknown)


def test_implausible_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.stm"
    path.write_text("NET NET ST 95.00000 2.00000 10.00 0.05 0.05 Probe\n2020/01/01 00:00 0.2 G M\n")
    with pytest.raises(InsituFormatError, match="implausible station position"):
        read_ismn_file(path)
    path.write_text("NET NET ST 45.00000 2.00000 10.00 0.10 0.05 Probe\n2020/01/01 00:00 0.2 G M\n")
    with pytest.raises(InsituFormatError, match="implausible depths"):
        read_ismn_file(path)


def test_mixed_line_endings_and_missing_sensor(tmp_path: Path) -> None:
    path = tmp_path / "plain.stm"  # not an ISMN file name: no sensor from the name either
    path.write_bytes(
        b"NET NET ST 45.00000 2.00000 10.00 0.00 0.05\n\r2020/01/01 00:00   0.2000 G M\r\n"
        b"2020/01/01 01:00   0.3000 D01 M\r2020/01/01 02:00   NaN M M\n"
    )
    frame = read_ismn_file(path)
    assert frame["value"].iloc[:2].tolist() == [0.2, 0.3] and np.isnan(frame["value"].iloc[2])
    assert frame["flag"].tolist() == ["G", "D01", "M"]
    assert frame["sensor"].isna().all()
    assert daily_means(frame)["n_obs"].tolist() == [2]


def test_parse_ismn_filename() -> None:
    name = parse_ismn_filename(f"some/dir/{NARBONNE}")
    assert name is not None
    assert (name.network, name.station, name.variable) == ("SMOSMANIA", "Narbonne", "sm")
    assert (name.depth_from, name.depth_to, name.sensor) == (0.05, 0.05, "ThetaProbe-ML2X")
    assert (name.start, name.end) == ("20070101", "20070131")
    underscored = parse_ismn_filename("C_NET_My_Station_sm_0.0_0.1_Probe_A_20200101_20201231.stm")
    assert underscored is not None
    assert (underscored.station, underscored.sensor) == ("My_Station", "Probe_A")
    assert parse_ismn_filename("readme.txt") is None


# --------------------------------------------------------------------------- plain CSV


def test_station_csv_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "twin.csv"
    path.write_text(
        "station,lon,lat,depth,time,value\n"
        "S01,100.5,40.25,0.05,2016-01-01T06:00:00,0.21\n"
        "S01,100.5,40.25,0.05,2016-01-02T06:00:00+02:00,0.19\n"
        "007,101.0,41.0,0.05,2016-01-01,0.30\n"
    )
    frame = read_station_csv(path, network="twin")
    assert list(frame.columns) == list(TIDY_COLUMNS)
    assert frame["station"].tolist() == ["S01", "S01", "007"]  # station ids stay text
    assert frame["network"].tolist() == ["twin"] * 3
    assert frame["time"].tolist() == [
        pd.Timestamp("2016-01-01 06:00", tz="UTC"),
        pd.Timestamp("2016-01-02 04:00", tz="UTC"),
        pd.Timestamp("2016-01-01 00:00", tz="UTC"),
    ]
    assert (frame["depth_from"] == frame["depth_to"]).all() and frame["depth_to"].iloc[0] == 0.05
    assert frame["value"].tolist() == [0.21, 0.19, 0.30]
    assert frame["flag"].tolist() == ["G"] * 3
    daily = daily_means(filter_flags(select_surface(frame)))
    expected = [["007", 0.30], ["S01", 0.21], ["S01", 0.19]]
    assert daily[["station", "value"]].values.tolist() == expected


def test_station_csv_network_and_flag_columns(tmp_path: Path) -> None:
    path = tmp_path / "twin.csv"
    path.write_text(
        "network,station,lon,lat,depth,time,value,flag\n"
        "A,S1,1,2,0.05,2016-01-01T00:00:00Z,0.2,G\nB,S2,1,2,0.10,2016-01-01T00:00:00Z,0.3,D03\n"
    )
    frame = read_station_csv(path, network="ignored")
    assert frame["network"].tolist() == ["A", "B"]
    assert filter_flags(frame)["station"].tolist() == ["S1"]
    assert select_surface(frame)["station"].tolist() == ["S1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("station,lon,lat,time,value\nS,1,2,2016-01-01,0.2\n", r"no column 'depth': set columns\.depth to the file's"),
        ("station,lon,lat,depth,time,value\nS,1,2,0.05,yesterday,0.2\n", "bad value"),
        ("station,lon,lat,depth,time,value\nS,1,2,0.05,2016-01-01,wet\n", "bad value"),
        ("", "not a readable CSV"),
    ],
)
def test_station_csv_errors_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InsituFormatError, match=message) as info:
        read_station_csv(path)
    assert info.value.path == str(path)


USER_CSV = (
    "site_id,longitude,latitude,sensor_depth_m,timestamp_utc,vwc,qc\n"
    "007,100.5,40.25,0.05,2016-01-01T06:00:00,0.21,G\n"
    "007,100.5,40.25,0.05,2016-01-02T06:00:00,0.19,D03\n"
)
USER_COLUMNS = {"station": "site_id", "lon": "longitude", "lat": "latitude", "depth": "sensor_depth_m",
                "time": "timestamp_utc", "value": "vwc", "flag": "qc"}


def test_station_csv_columns_read_a_users_own_names(tmp_path: Path) -> None:
    mine = tmp_path / "mine.csv"
    mine.write_text(USER_CSV)
    plain = tmp_path / "plain.csv"
    plain.write_text("station,lon,lat,depth,time,value,flag\n" + USER_CSV.split("\n", 1)[1])
    frame = read_station_csv(mine, network="MINE", columns=USER_COLUMNS)
    pd.testing.assert_frame_equal(frame, read_station_csv(plain, network="MINE"))
    assert frame["station"].tolist() == ["007", "007"]  # the mapped station column stays text
    assert frame["flag"].tolist() == ["G", "D03"]


def test_a_missing_mapped_column_names_the_file_the_column_and_the_key(tmp_path: Path) -> None:
    mine = tmp_path / "mine.csv"
    mine.write_text(USER_CSV)
    key = "validation.stations[2].columns"
    with pytest.raises(InsituFormatError) as info:
        read_station_csv(mine, columns={**USER_COLUMNS, "value": "sm_5cm"}, setting=key)
    text = str(info.value)
    assert info.value.path == str(mine) and text.startswith(str(mine))
    assert f"no column 'sm_5cm' (dsm's 'value', set by {key}.value)" in text and "'vwc'" in text
    # an optional column (flag) that is mapped must exist too; an unmapped required one names its key
    with pytest.raises(InsituFormatError, match=rf"no column 'quality' \(dsm's 'flag', set by {re.escape(key)}\.flag\)"):
        read_station_csv(mine, columns={**USER_COLUMNS, "flag": "quality"}, setting=key)
    columns = {k: v for k, v in USER_COLUMNS.items() if k != "depth"}
    with pytest.raises(InsituFormatError, match=rf"no column 'depth': set {re.escape(key)}\.depth to the file's name"):
        read_station_csv(mine, columns=columns, setting=key)


def test_weather_csv_columns_and_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "weather.csv"
    path.write_text("id,x,y,date,PRCP,TAVG\n01,109.1,38.9,2016-06-09,1.5,21.0\n01,109.1,38.9,2016-06-10,0.0,23.5\n")
    columns = {"station": "id", "lon": "x", "lat": "y", "time": "date", "precip_mm": "PRCP", "tair_c": "TAVG"}
    w = read_weather_csv(StoreRef(str(path)), columns=columns)
    assert list(w.columns) == list(insitu.WEATHER_COLUMNS)
    assert w["station"].tolist() == ["01", "01"] and w["precip_mm"].tolist() == [1.5, 0.0]
    assert w["time"].tolist() == [pd.Timestamp("2016-06-09"), pd.Timestamp("2016-06-10")]
    key = "validation.weather_columns"
    with pytest.raises(InsituFormatError) as info:
        read_weather_csv(StoreRef(str(path)), columns={**columns, "tair_c": "TMEAN"}, setting=key)
    assert str(info.value).startswith(str(path)) and f"no column 'TMEAN' (dsm's 'tair_c', set by {key}.tair_c)" in str(info.value)
    with pytest.raises(InsituFormatError, match=rf"no column 'precip_mm': set {key}\.precip_mm"):
        read_weather_csv(StoreRef(str(path)), columns={k: v for k, v in columns.items() if k != "precip_mm"},
                         setting=key)


# --------------------------------------------------------------------------- processing


def test_filter_flags_rules() -> None:
    flags = ["G", "D03", "D03,D05", "M", None, "C01", "G,D05"]
    frame = _tidy(
        [{"time": f"2020-01-01T{h:02d}:00", "value": 0.2, "flag": f} for h, f in enumerate(flags)]
    )
    assert filter_flags(frame)["flag"].tolist() == ["G"]
    assert filter_flags(frame, keep="D03")["flag"].tolist() == ["D03"]
    assert filter_flags(frame, keep=("G", "D"))["flag"].tolist() == ["G", "D03", "D03,D05", "G,D05"]
    assert filter_flags(frame, keep=("D03", "D05"))["flag"].tolist() == ["D03", "D03,D05"]
    assert filter_flags(frame, keep=()).empty


def test_select_surface_threshold() -> None:
    frame = _tidy(
        [
            {"time": "2020-01-01", "value": 0.1, "depth_from": 0.0, "depth_to": 0.05},
            {"time": "2020-01-01", "value": 0.2, "depth_from": 0.05, "depth_to": 0.05},
            {"time": "2020-01-01", "value": 0.3, "depth_from": 0.0, "depth_to": 0.1},
        ]
    )
    assert select_surface(frame)["value"].tolist() == [0.1, 0.2]
    assert select_surface(frame, max_depth=0.1)["value"].tolist() == [0.1, 0.2, 0.3]
    assert select_surface(frame, max_depth=0.04).empty


def test_daily_means_utc_days_min_count_and_sensors() -> None:
    rows = [
        {"time": "2020-01-01T00:00Z", "value": 0.10},
        {"time": "2020-01-01T12:00Z", "value": 0.20},
        {"time": "2020-01-01T23:59Z", "value": np.nan},  # missing: not counted
        {"time": "2020-01-01T23:30-02:00", "value": 0.40},  # 01:30 UTC on 2 January
        {"time": "2020-01-02T05:00Z", "value": 0.50, "sensor": "other"},
    ]
    frame = _tidy(rows)
    daily = daily_means(frame)
    day_1, day_2 = pd.Timestamp("2020-01-01", tz="UTC"), pd.Timestamp("2020-01-02", tz="UTC")
    assert daily["time"].tolist() == [day_2, day_1, day_2]
    assert daily["sensor"].tolist() == ["other", "probe", "probe"]  # sorted by sensor, then day
    assert daily["value"].tolist() == pytest.approx([0.50, 0.15, 0.40])
    assert daily["n_obs"].tolist() == [1, 2, 1]
    local = frame.assign(time=frame["time"].dt.tz_convert("Etc/GMT+2"))  # days stay UTC days
    pd.testing.assert_frame_equal(daily_means(local), daily)
    strict = daily_means(frame, min_count=2)
    assert strict[["time", "value", "n_obs"]].values.tolist() == [[day_1, pytest.approx(0.15), 2]]
    with pytest.raises(ValueError, match="min_count"):
        daily_means(frame, min_count=0)
    naive = frame.assign(time=frame["time"].dt.tz_localize(None))
    with pytest.raises(ValueError, match="timezone-aware"):
        daily_means(naive)
    with pytest.raises(ValueError, match="no column"):
        daily_means(frame.drop(columns="sensor"))


def test_station_table_and_empty_results() -> None:
    frame = _tidy(
        [{"time": "2020-01-01T00:00Z", "value": 0.1}, {"time": "2020-01-03T00:00Z", "value": 0.2}]
    )
    table = station_table(frame)
    assert table[["station", "n_records"]].values.tolist() == [["s1", 2]]
    assert table["end"].item() == pd.Timestamp("2020-01-03", tz="UTC")
    empty = insitu.read_ismn_files([]).data
    assert list(empty.columns) == list(TIDY_COLUMNS) and empty.empty
    assert daily_means(empty).empty and list(daily_means(empty).columns) == list(DAILY_COLUMNS)
