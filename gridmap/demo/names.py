"""Name pools for the synthetic city (Chinese with pinyin), people and places."""

from __future__ import annotations

import numpy as np

PLACE_WORDS: list[tuple[str, str]] = [
    ("和平", "Heping"), ("幸福", "Xingfu"), ("光明", "Guangming"), ("建设", "Jianshe"), ("团结", "Tuanjie"),
    ("文化", "Wenhua"), ("东风", "Dongfeng"), ("红星", "Hongxing"), ("新华", "Xinhua"), ("胜利", "Shengli"),
    ("长青", "Changqing"), ("桃园", "Taoyuan"), ("柳林", "Liulin"), ("杏花", "Xinghua"), ("梅岭", "Meiling"),
    ("松涛", "Songtao"), ("竹溪", "Zhuxi"), ("兰亭", "Lanting"), ("荷塘", "Hetang"), ("枫桥", "Fengqiao"),
    ("梧桐", "Wutong"), ("金城", "Jincheng"), ("银河", "Yinhe"), ("锦绣", "Jinxiu"), ("清河", "Qinghe"),
    ("白塔", "Baita"), ("青山", "Qingshan"), ("绿洲", "Lüzhou"), ("龙泉", "Longquan"), ("凤凰", "Fenghuang"),
    ("瑞丰", "Ruifeng"), ("安居", "Anju"), ("永安", "Yong'an"), ("泰和", "Taihe"), ("嘉禾", "Jiahe"),
    ("民生", "Minsheng"), ("兴业", "Xingye"), ("振兴", "Zhenxing"), ("华阳", "Huayang"), ("朝阳", "Chaoyang"),
    ("双桥", "Shuangqiao"), ("三里", "Sanli"), ("五星", "Wuxing"), ("七贤", "Qixian"), ("九华", "Jiuhua"),
    ("曙光", "Shuguang"), ("春晖", "Chunhui"), ("秋实", "Qiushi"), ("望江", "Wangjiang"), ("临湖", "Linhu"),
    ("翠竹", "Cuizhu"), ("玉兰", "Yulan"), ("丹桂", "Dangui"), ("芙蓉", "Furong"), ("石榴", "Shiliu"),
    ("百花", "Baihua"), ("新村", "Xincun"), ("古井", "Gujing"), ("书院", "Shuyuan"), ("广福", "Guangfu"),
    ("大庙", "Damiao"), ("西湾", "Xiwan"), ("南岗", "Nangang"), ("北关", "Beiguan"), ("东岳", "Dongyue"),
    ("高桥", "Gaoqiao"), ("平安", "Ping'an"), ("康乐", "Kangle"), ("同心", "Tongxin"), ("顺河", "Shunhe"),
]  # fmt: skip
PLACE_SUFFIX = [("苑", "Yuan"), ("园", "Yuan"), ("里", "Li"), ("湾", "Wan"), ("庄", "Zhuang"), ("坊", "Fang"),
                ("桥", "Qiao"), ("湖", "Hu"), ("岭", "Ling"), ("塘", "Tang"), ("", "")]  # fmt: skip

DISTRICTS: list[tuple[str, str]] = [
    ("临江区", "Linjiang District"), ("望湖区", "Wanghu District"), ("青松区", "Qingsong District"),
    ("云台区", "Yuntai District"), ("金桥区", "Jinqiao District"), ("北山区", "Beishan District"),
    ("南湖区", "Nanhu District"), ("新港区", "Xingang District"), ("丰乐县", "Fengle County"),
    ("长宁县", "Changning County"), ("安平县", "Anping County"), ("永丰县", "Yongfeng County"),
    ("清溪县", "Qingxi County"), ("白沙县", "Baisha County"), ("石门县", "Shimen County"),
    ("龙山县", "Longshan County"),
]  # fmt: skip

SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
# rough frequency: the first surnames are far more common (Zipf-like)
SURNAME_P = (1.0 / np.arange(1, len(SURNAMES) + 1) ** 0.9) / (1.0 / np.arange(1, len(SURNAMES) + 1) ** 0.9).sum()
GIVEN_M = list("伟强磊军洋勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆帅旭宁龙林欢阳建国志文博晨昊然子轩浩宇")
GIVEN_F = list("芳娜敏静丽艳娟霞秀英华慧巧美玲桂兰萍红燕梅琳雪婷颖倩晶欣怡佳悦雨萱梓涵诗琪思")


def place_name(rng: np.random.Generator, used: set[str]) -> tuple[str, str]:
    """A unique-within-`used` two- or three-character place name with its pinyin."""
    for _ in range(200):
        w = PLACE_WORDS[rng.integers(len(PLACE_WORDS))]
        s = PLACE_SUFFIX[rng.integers(len(PLACE_SUFFIX))]
        zh, en = w[0] + s[0], w[1] + s[1].lower()
        if zh not in used:
            used.add(zh)
            return zh, en
    n = len(used)
    w = PLACE_WORDS[n % len(PLACE_WORDS)]
    zh, en = f"{w[0]}{n}", f"{w[1]} {n}"
    used.add(zh)
    return zh, en


def person_names(rng: np.random.Generator, male: np.ndarray) -> np.ndarray:
    """Vectorised Chinese names: a surname and one or two given characters."""
    n = len(male)
    sur = np.array(SURNAMES)[rng.choice(len(SURNAMES), size=n, p=SURNAME_P)]
    gm, gf = np.array(GIVEN_M), np.array(GIVEN_F)
    g1 = np.where(male, gm[rng.integers(len(gm), size=n)], gf[rng.integers(len(gf), size=n)])
    g2 = np.where(male, gm[rng.integers(len(gm), size=n)], gf[rng.integers(len(gf), size=n)])
    two = rng.random(n) < 0.7
    return np.char.add(np.char.add(sur, g1), np.where(two, g2, ""))
