"""seed the incident category taxonomy

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

The standard event classes of digital city management (GB/T 30428.2 event major classes:
市容环境, 宣传广告, 施工管理, 突发事件, 街面秩序) and the social-governance extensions used by grid
management (矛盾纠纷, 治安隐患, 安全生产, 消防, 民生服务, plus 信访 and 治安/刑事 for the "three zeros"),
each with a default time limit for a normal-severity case. Cities edit the table afterwards;
this migration only seeds it. Tags mark categories that the "three zeros" KPI counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WH, WD, CH = "working_hours", "working_days", "calendar_hours"

# code, parent, name_zh, name_en, time_limit, unit, tags
CATEGORIES: list[tuple[str, str | None, str, str, float, str, list[str]]] = [
    ("01", None, "市容环境", "City appearance & environment", 1, WD, []),
    ("0101", "01", "私搭乱建", "Unauthorised structure", 5, WD, []),
    ("0102", "01", "暴露垃圾", "Exposed rubbish", 4, WH, []),
    ("0103", "01", "积存垃圾渣土", "Accumulated waste and spoil", 1, WD, []),
    ("0104", "01", "道路不洁", "Dirty road surface", 4, WH, []),
    ("0105", "01", "水域不洁", "Polluted water surface", 2, WD, []),
    ("0106", "01", "绿地脏乱", "Neglected green space", 1, WD, []),
    ("0107", "01", "废弃车辆", "Abandoned vehicle", 3, WD, []),
    ("02", None, "宣传广告", "Publicity & advertising", 1, WD, []),
    ("0201", "02", "非法小广告", "Illegal flyers and graffiti", 1, WD, []),
    ("0202", "02", "违规张贴悬挂广告", "Unauthorised posters and banners", 1, WD, []),
    ("0203", "02", "占道广告牌", "Advertising board on the road", 2, WD, []),
    ("0204", "02", "街头散发广告", "Handing out ads on the street", 4, WH, []),
    ("03", None, "施工管理", "Construction management", 2, WD, []),
    ("0301", "03", "施工扰民", "Construction noise and nuisance", 4, WH, []),
    ("0302", "03", "工地扬尘", "Construction dust", 4, WH, []),
    ("0303", "03", "道路遗撒", "Spillage on the road", 2, WH, []),
    ("0304", "03", "违规占道施工", "Unauthorised roadworks", 1, WD, []),
    ("04", None, "突发事件", "Emergencies", 2, WH, []),
    ("0401", "04", "路面塌陷", "Road collapse", 2, CH, ["accident"]),
    ("0402", "04", "自来水管破裂", "Burst water main", 2, CH, []),
    ("0403", "04", "燃气管道泄漏", "Gas leak", 1, CH, ["accident"]),
    ("0404", "04", "下水道堵塞或破损", "Blocked or broken sewer", 4, WH, []),
    ("0405", "04", "供电设施故障", "Power supply failure", 2, CH, []),
    ("0406", "04", "道路积水", "Road flooding", 2, CH, []),
    ("0407", "04", "道路积雪结冰", "Snow and ice on the road", 4, CH, []),
    ("05", None, "街面秩序", "Street order", 4, WH, []),
    ("0501", "05", "无照经营游商", "Unlicensed street vending", 2, WH, []),
    ("0502", "05", "店外经营", "Business spilling onto the pavement", 4, WH, []),
    ("0503", "05", "机动车乱停放", "Illegal car parking", 2, WH, []),
    ("0504", "05", "非机动车乱停放", "Bicycles and e-bikes parked in the way", 4, WH, []),
    ("0505", "05", "露天烧烤", "Open-air barbecue", 2, WH, []),
    ("0506", "05", "夜市扰民", "Night-market noise", 4, WH, []),
    ("0507", "05", "占道废品收购", "Scrap collection on the road", 1, WD, []),
    ("10", None, "矛盾纠纷", "Disputes", 5, WD, []),
    ("1001", "10", "邻里纠纷", "Neighbour dispute", 5, WD, []),
    ("1002", "10", "婚姻家庭纠纷", "Family and marriage dispute", 5, WD, []),
    ("1003", "10", "劳资纠纷", "Wage dispute", 10, WD, []),
    ("1004", "10", "物业纠纷", "Property-management dispute", 5, WD, []),
    ("11", None, "治安隐患", "Public-security hazards", 1, WD, []),
    ("1101", "11", "可疑人员线索", "Suspicious person", 4, WH, []),
    ("1102", "11", "群租房隐患", "Overcrowded rental", 3, WD, []),
    ("1103", "11", "黄赌毒线索", "Gambling, drugs or prostitution lead", 1, WD, ["criminal"]),
    ("1104", "11", "盗窃", "Theft", 1, WD, ["criminal"]),
    ("12", None, "安全生产", "Work safety", 2, WD, []),
    ("1201", "12", "危化品隐患", "Hazardous-chemicals risk", 1, WD, []),
    ("1202", "12", "企业安全隐患", "Workplace safety hazard", 3, WD, []),
    ("1203", "12", "高空坠物隐患", "Risk of falling objects", 1, WD, []),
    ("1204", "12", "生产安全事故", "Work-safety accident", 2, CH, ["accident"]),
    ("13", None, "消防", "Fire safety", 1, WD, []),
    ("1301", "13", "消防通道堵塞", "Blocked fire lane", 4, WH, []),
    ("1302", "13", "电动车违规充电", "E-bike charged indoors", 4, WH, []),
    ("1303", "13", "消防设施损坏", "Broken fire equipment", 2, WD, []),
    ("1304", "13", "火灾", "Fire", 1, CH, ["accident"]),
    ("14", None, "民生服务", "Livelihood services", 3, WD, []),
    ("1401", "14", "独居老人关怀", "Care for an elderly person living alone", 2, WD, []),
    ("1402", "14", "困难群众救助", "Hardship assistance", 5, WD, []),
    ("1403", "14", "证照代办咨询", "Help with certificates and permits", 3, WD, []),
    ("1404", "14", "公共设施报修", "Public facility repair", 3, WD, []),
    ("15", None, "信访", "Petitions", 15, WD, ["petition"]),
    ("1501", "15", "来信来访", "Letter or visit petition", 15, WD, ["petition"]),
    ("1502", "15", "越级上访苗头", "Risk of escalated petition", 3, WD, ["petition"]),
]

category = sa.table(
    "category",
    sa.column("code", sa.String),
    sa.column("parent_code", sa.String),
    sa.column("name_zh", sa.Text),
    sa.column("name_en", sa.Text),
    sa.column("level", sa.SmallInteger),
    sa.column("time_limit", sa.Numeric),
    sa.column("time_unit", sa.String),
    sa.column("tags", sa.ARRAY(sa.Text)),
)


def upgrade() -> None:
    op.bulk_insert(
        category,
        [
            {
                "code": code, "parent_code": parent, "name_zh": zh, "name_en": en,
                "level": 1 if parent is None else 2, "time_limit": limit, "time_unit": unit, "tags": tags,
            }  # fmt: skip
            for code, parent, zh, en, limit, unit, tags in CATEGORIES
        ],
    )


def downgrade() -> None:
    op.execute("DELETE FROM category WHERE parent_code IS NOT NULL")
    op.execute("DELETE FROM category")
