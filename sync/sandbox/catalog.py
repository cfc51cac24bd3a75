"""The static world of a sandbox: agencies, tasks, creators and videos, generated from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass

from sync.sandbox.days import DAY, day_of, day_start

ID_LOW = 7_000_000_000_000_000_000
ID_HIGH = 7_400_000_000_000_000_000
"""19-digit int64 ids, far above 2**53 (and made odd, so no float can hold one exactly)."""

MICRO_APP_TITLES = ("行业ITC", "小游戏·合成大西瓜")

SPECIAL_TITLES = (
    "'); DROP TABLE video_daily_earnings;--",
    'He said "hello" \\ and left \\\\ C:\\path\\to\\file',
    "emoji 😀🎉👨‍👩‍👧‍👦🇨🇳 组合表情 ❤️‍🔥",
    "line one\nline two\ttabbed \u0001 control",
    "<script>alert('x')</script> & ampersand",
    'Robert\'); -- "quoted" `backtick` ${interp} %s %d {0}',
    "零宽\u200b空格\u200d和\ufeffBOM",
    "NUL in the middle \x00 of a title",
    "lone surrogate \ud800 from a broken emoji",
)

_WORDS = (
    "今天",
    "打卡",
    "小程序",
    "超好玩",
    "挑战",
    "第一关",
    "通关",
    "攻略",
    "分享",
    "快来",
    "一起玩",
    "太难了",
    "宝藏",
    "必看",
    "新手",
    "教程",
    "game",
    "vlog",
    "daily",
    "😂",
    "🔥",
    "👍",
    "✨",
    "🎮",
    "#抖音小游戏",
    "#合成大西瓜",
    "@好友",
    "“引号”",
    "「括号」",
)


@dataclass(frozen=True, slots=True)
class Agency:
    client_key: str
    name: str


@dataclass(frozen=True, slots=True)
class Task:
    task_id: int
    name: str
    micro_app_title: str
    exclusive: bool
    terminated: bool


@dataclass(frozen=True, slots=True)
class Creator:
    douyin_id: str
    author: str


@dataclass(frozen=True, slots=True)
class Video:
    video_id: int
    task: Task
    creator: Creator
    agency: Agency | None
    publish_time: int
    title: str
    mid: int

    @property
    def link(self) -> str:
        return f"https://www.iesdouyin.com/share/video/{self.video_id}/?region=CN&mid={self.mid}"

    @property
    def sort_key(self) -> tuple[int, int, int]:
        """The API's stable order: publish time, then video id, then task id."""
        return (self.publish_time, self.video_id, self.task.task_id)


@dataclass(frozen=True)
class Catalog:
    agencies: tuple[Agency, ...]
    tasks: tuple[Task, ...]
    creators: tuple[Creator, ...]
    videos: tuple[Video, ...]
    """Sorted by `Video.sort_key`."""
    pools: dict[int, tuple[Creator, ...]]
    """Creators who may publish on each exclusive task (task id -> creators)."""
    anchor: int
    """00:00 Shanghai of the day the catalog was generated: videos were published before it."""


class IdSource:
    """Unique odd 19-digit ids from a seeded generator."""

    def __init__(self, rng: random.Random, taken: set[int] | None = None) -> None:
        self._rng = rng
        self._taken: set[int] = taken if taken is not None else set()

    def next(self) -> int:
        while True:
            value = self._rng.randrange(ID_LOW, ID_HIGH) | 1
            if value not in self._taken:
                self._taken.add(value)
                return value


def build_catalog(
    seed: int, *, videos: int, tasks: int, creators: int, history_days: int, now: float
) -> Catalog:
    """Generate the whole static world; the same arguments give the same catalog."""
    rng = random.Random(f"taskbox-sandbox/{seed}")
    ids = IdSource(rng)
    anchor = day_start(day_of(now))  # the same data all day long, whatever the hour
    agencies = tuple(
        Agency(client_key=f"awck{rng.getrandbits(48):012x}", name=f"撮合网站应用{i + 1:03d}")
        for i in range(3)
    )
    task_list = [_task(i, rng, ids) for i in range(tasks)]
    creator_list = _creators(creators, rng)
    pools = {
        t.task_id: tuple(rng.sample(creator_list, k=min(len(creator_list), rng.randint(4, 12))))
        for t in task_list
        if t.exclusive
    }
    video_list: list[Video] = []
    earliest = anchor - history_days * DAY
    for n in range(videos):
        # The running exclusive task always has published creators, and so does the terminated one.
        task = task_list[(0, 0, 1)[n]] if n < 3 else task_list[rng.randrange(len(task_list))]
        pool = pools.get(task.task_id, creator_list)
        creator = pool[rng.randrange(len(pool))]
        agency = agencies[rng.randrange(len(agencies))] if rng.random() < 0.7 else None
        video_list.append(
            Video(
                video_id=ids.next(),
                task=task,
                creator=creator,
                agency=agency,
                publish_time=rng.randint(earliest, anchor - 1),
                title=random_title(rng),
                mid=ids.next(),
            )
        )
    _place_special_titles(video_list, rng, anchor)
    video_list.sort(key=lambda v: v.sort_key)
    return Catalog(
        agencies=agencies,
        tasks=tuple(task_list),
        creators=tuple(creator_list),
        videos=tuple(video_list),
        pools=pools,
        anchor=anchor,
    )


def _task(index: int, rng: random.Random, ids: IdSource) -> Task:
    # Task 0: exclusive and running; task 1: exclusive and terminated; task 2: open to all.
    if index == 0:
        exclusive, terminated = True, False
    elif index == 1:
        exclusive, terminated = True, True
    elif index == 2:
        exclusive, terminated = False, False
    else:
        exclusive, terminated = rng.random() < 0.4, False
    kind = "专属" if exclusive else "公开"
    return Task(
        task_id=ids.next(),
        name=f"小程序{kind}推广任务R{index + 1}" + (" 🔥" if index % 4 == 3 else ""),
        micro_app_title=MICRO_APP_TITLES[index % len(MICRO_APP_TITLES)],
        exclusive=exclusive,
        terminated=terminated,
    )


def _creators(count: int, rng: random.Random) -> list[Creator]:
    seen: set[str] = set()
    result: list[Creator] = []
    nick = ("小鱼", "nice", "阿杰", "游戏王", "Lily", "橙子🍊", '"老王"', "back\\slash", "星星✨")
    while len(result) < count:
        style = rng.randrange(3)
        if style == 0:
            douyin_id = str(rng.randrange(10**9, 10**11))
        elif style == 1:
            douyin_id = f"A{rng.randrange(10**6, 10**8)}"
        else:
            douyin_id = f"lw{rng.randrange(10**5, 10**7)}"
        if douyin_id in seen:
            continue
        seen.add(douyin_id)
        author = f"{nick[rng.randrange(len(nick))]}{rng.randrange(1000)}"
        result.append(Creator(douyin_id=douyin_id, author=author))
    return result


def random_title(rng: random.Random) -> str:
    """A short title in the mix of Chinese, emoji, hashtags and quotes users write."""
    count = rng.randint(1, 8)
    return " ".join(_WORDS[rng.randrange(len(_WORDS))] for _ in range(count))


def _place_special_titles(videos: list[Video], rng: random.Random, anchor: int) -> None:
    """Give the hostile titles (and a few multi-KB ones) to videos within the 90-day reach."""
    recent = [i for i, v in enumerate(videos) if v.publish_time >= anchor - 60 * DAY]
    if not recent:
        return
    specials: list[str] = list(SPECIAL_TITLES)
    for n in range(3):
        block = f"很长的标题{n} “quoted” \\ 😀 " + "超长描述文本ABC" * (250 + 100 * n)
        specials.append(block)  # a few KB each
    picks = rng.sample(recent, k=min(len(recent), len(specials)))
    for index, title in zip(picks, specials, strict=False):
        old = videos[index]
        videos[index] = Video(
            video_id=old.video_id,
            task=old.task,
            creator=old.creator,
            agency=old.agency,
            publish_time=old.publish_time,
            title=title,
            mid=old.mid,
        )
