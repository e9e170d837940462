from phalanx.engine.rendezvous import Answer, Rendezvous

HOSTS = frozenset({"a", "b", "c"})


def stage(r: Rendezvous, stage_id: str = "s1", scope: str = "case1") -> None:
    r.begin_stage(stage_id, HOSTS, scope)


def test_barrier_releases_only_when_every_host_arrived():
    r = Rendezvous()
    stage(r)
    assert r.arrive("s1", "a", "ready", "r1") == []
    assert r.arrive("s1", "b", "ready", "r2") == []
    released = r.arrive("s1", "c", "ready", "r3")
    assert sorted(released, key=lambda a: a.host) == [
        Answer("a", "r1"),
        Answer("b", "r2"),
        Answer("c", "r3"),
    ]


def test_a_host_that_finished_its_stage_does_not_hold_the_barrier():
    r = Rendezvous()
    stage(r)
    r.arrive("s1", "a", "x", "r1")
    r.arrive("s1", "b", "x", "r2")
    released = r.host_done("s1", "c")
    assert {a.request_id for a in released} == {"r1", "r2"}


def test_repeated_barrier_names_meet_in_generations():
    r = Rendezvous()
    stage(r)
    for host in "ab":
        r.arrive("s1", host, "loop", f"{host}1")
    # `a` goes round again before `c` arrived the first time.
    assert r.arrive("s1", "a", "loop", "a2") == []
    first = r.arrive("s1", "c", "loop", "c1")
    assert {a.request_id for a in first} == {"a1", "b1", "c1"}
    r.arrive("s1", "b", "loop", "b2")
    second = r.arrive("s1", "c", "loop", "c2")
    assert {a.request_id for a in second} == {"a2", "b2", "c2"}


def test_a_resent_request_gets_the_same_answer_again():
    r = Rendezvous()
    stage(r)
    for host in "abc":
        r.arrive("s1", host, "x", f"r{host}")
    assert r.arrive("s1", "a", "x", "ra") == [Answer("a", "ra")]


def test_wait_before_send_is_answered_by_the_send():
    r = Rendezvous()
    stage(r)
    assert r.wait("s1", "b", "url", "w1") == []
    assert r.send("s1", "url", "http://x") == [Answer("b", "w1", "url", "http://x")]
    assert r.wait("s1", "c", "url", "w2") == [Answer("c", "w2", "url", "http://x")]


def test_values_belong_to_their_case():
    r = Rendezvous()
    stage(r, "s1", "case1")
    r.send("s1", "k", "one")
    r.end_stage("s1")
    stage(r, "s2", "case2")
    assert r.wait("s2", "a", "k", "w") == []
    # Another stage of the first case sees its value.
    stage(r, "s3", "case1")
    assert r.wait("s3", "a", "k", "w3") == [Answer("a", "w3", "k", "one")]


def test_messages_for_an_ended_stage_are_ignored():
    r = Rendezvous()
    stage(r)
    r.end_stage("s1")
    assert r.arrive("s1", "a", "x", "r1") == []
    assert r.send("s1", "k", "v") == []


def test_an_ended_stage_leaves_its_waiters_and_answers_behind():
    r = Rendezvous()
    stage(r, "s1", "case1")
    assert r.wait("s1", "a", "k", "w1") == []
    for host in "abc":
        r.arrive("s1", host, "x", f"r{host}")
    assert r.held() == (1, 1)
    r.end_stage("s1")
    assert r.held() == (0, 0)
    # A later stage of the case sending the key answers only its own waiters.
    stage(r, "s2", "case1")
    assert r.wait("s2", "b", "k", "w2") == []
    assert r.send("s2", "k", "v") == [Answer("b", "w2", "k", "v")]
    # A resend for the ended stage gets nothing: its host has ended it.
    assert r.arrive("s1", "a", "x", "ra") == []
    r.end_stage("s2")
    assert r.held() == (0, 0)


def test_a_value_sent_in_one_stage_answers_waiters_of_another_stage_of_the_case():
    r = Rendezvous()
    r.begin_stage("init", frozenset("a"), "case1")
    r.begin_stage("run", frozenset("b"), "case1")
    assert r.wait("run", "b", "k", "w") == []
    assert r.send("init", "k", "v") == [Answer("b", "w", "k", "v")]
    # The answer is the waiter's stage's, for its resend.
    assert r.wait("run", "b", "k", "w") == [Answer("b", "w", "k", "v")]


def test_each_run_has_its_own_values():
    one, two = Rendezvous(), Rendezvous()
    stage(one, "r1:s", "1:c")
    stage(two, "r2:s", "1:c")
    one.send("r1:s", "k", "one")
    assert two.wait("r2:s", "a", "k", "w") == []
    assert two.send("r2:s", "k", "two") == [Answer("a", "w", "k", "two")]
