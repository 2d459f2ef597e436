"""Controlled vocabularies shared by the models, the services and the API (one place each)."""

from __future__ import annotations

ADMIN_LEVELS = {"district": 6, "street": 9, "community": 12}  # GB/T 2260-style code lengths

GRID_KINDS = {
    "general": ("综合网格", "general"),
    "school": ("学校专属网格", "school"),
    "hospital": ("医院专属网格", "hospital"),
    "industrial_park": ("园区专属网格", "industrial park"),
    "commercial": ("商圈专属网格", "commercial district"),
    "government": ("机关单位专属网格", "government compound"),
    "scenic": ("景区专属网格", "scenic area"),
    "other": ("其他专属网格", "other dedicated"),
}

BUILDING_USES = {
    "residential": ("住宅", "residential"),
    "mixed": ("商住混合", "mixed use"),
    "commercial": ("商业", "commercial"),
    "office": ("办公", "office"),
    "school": ("学校", "school"),
    "hospital": ("医院", "hospital"),
    "industrial": ("工业", "industrial"),
    "public": ("公共设施", "public facility"),
    "village_house": ("农村自建房", "village house"),
    "other": ("其他", "other"),
}

STAFF_ROLES = {
    "grid_worker": ("网格员", "grid worker"),
    "grid_leader": ("网格长", "grid leader"),
    "community_admin": ("社区管理员", "community admin"),
    "street_admin": ("街道管理员", "street admin"),
    "district_admin": ("区县管理员", "district admin"),
    "dispatcher": ("派遣员", "dispatcher"),
    "command_center": ("指挥中心", "command center"),
    "planner": ("规划员", "planner"),
    "analyst": ("分析员", "analyst"),
    "auditor": ("审计员", "auditor"),
    "admin": ("系统管理员", "admin"),
}

SCOPE_LEVELS = ("grid", "community", "street", "district", "city")
DUTY_STATUSES = ("on_duty", "off_duty", "busy", "leave")

INCIDENT_STATUSES = {
    "reported": ("已上报", "reported"),
    "registered": ("已立案", "registered"),
    "rejected": ("不予立案", "rejected"),
    "dispatched": ("已派遣", "dispatched"),
    "in_progress": ("处置中", "in progress"),
    "resolved": ("已处置", "resolved"),
    "verified": ("已核查", "verified"),
    "closed": ("已结案", "closed"),
}
OPEN_STATUSES = ("reported", "registered", "dispatched", "in_progress", "resolved", "verified")
ESCALATION_LEVELS = ("grid", "community", "street", "district")
SEVERITIES = {1: ("一般", "low"), 2: ("较重", "normal"), 3: ("严重", "high"), 4: ("特别严重", "critical")}
INCIDENT_SOURCES = {
    "hotline": ("12345热线", "12345 hotline"),
    "citizen_app": ("市民随手拍", "citizen app"),
    "camera": ("视频发现", "camera"),
    "patrol": ("网格员巡查", "patrol"),
    "department": ("部门转办", "department referral"),
    "open311": ("公众上报", "public report"),
}
TIME_UNITS = ("working_hours", "working_days", "calendar_hours")
PLAN_STATUSES = ("draft", "validated", "scheduled", "applied", "failed", "discarded", "rolled_back")

CAMERA_KINDS = ("public_security", "traffic", "city_management", "community")
SERVICE_POINT_KINDS = {
    "party_service_center": ("党群服务中心", "party & community service center"),
    "grid_station": ("网格工作站", "grid workstation"),
    "police_station": ("派出所/警务室", "police station"),
    "clinic": ("社区卫生服务站", "community clinic"),
    "elderly_care": ("养老服务站", "elderly care station"),
    "emergency_shelter": ("应急避难场所", "emergency shelter"),
}
ROAD_KINDS = ("arterial", "secondary", "local")
RESIDENT_TAGS = {
    "elderly_alone": ("独居老人", "elderly living alone"),
    "community_correction": ("社区矫正", "community correction"),
    "disabled": ("残疾人", "person with disability"),
    "low_income": ("低保户", "low-income household"),
    "left_behind_child": ("留守儿童", "left-behind child"),
    "veteran": ("退役军人", "veteran"),
    "mental_health": ("严重精神障碍患者", "severe mental disorder"),
}
