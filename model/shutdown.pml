/*
 * shutdown.pml: the one stop (supervisor/shutdown.go) on a discrete clock.
 * Two levels of services (stopped in reverse start order), a job, and an
 * orphan the final sweep must end; each process chooses at the start how
 * it takes its stop signal: it exits after 0, 1 or 2 ticks, ignores it
 * (only SIGKILL ends it), or is stuck in D state (nothing ends it). The
 * budget is GRACE ticks; each stop_timeout STOPT; the sweep's SIGTERM to
 * SIGKILL step CLEANUP; after the final SIGKILL tend waits FINAL at most.
 * Time passes only when nothing else can happen (Promela's timeout).
 *
 * Properties: tend finishes, and by GRACE + FINAL at the latest
 * (invariant 6); when it finishes every process but a stuck one is gone
 * (invariant 11); no level is stopped before the one after it in start
 * order has ended, or the budget is out.
 *
 * Variants that must fail:
 *   NO_BUDGET_KILL   the end of the budget kills nothing
 *   NO_FINAL_BOUND   tend waits for the last exit however long
 */

#ifndef GRACE
#define GRACE 4
#endif
#ifndef STOPT
#define STOPT 2
#endif
#ifndef CLEANUP
#define CLEANUP 1
#endif
#ifndef FINAL
#define FINAL 1
#endif

#define NP 4            /* 0, 1: services of level 1 and 2; 2: the job; 3: the orphan */
mtype = { EXITS0, EXITS1, EXITS2, IGNORES, STUCK };
mtype how[NP];
bool  alive[NP] = true;
bool  termed[NP];
bool  killed[NP];
byte  termAt[NP];       /* when its SIGTERM came */
byte  now = 0;
bool  finished = false;
byte  finishedAt = 0;

/* each process, once it got its SIGTERM: its end, when its choice says */
active [NP] proctype Proc() {
	byte me = _pid;
	if
	:: how[me] = EXITS0
	:: how[me] = EXITS1
	:: how[me] = EXITS2
	:: how[me] = IGNORES
	:: how[me] = STUCK
	fi;
end:	do
	:: atomic { alive[me] && how[me] != STUCK && killed[me] -> alive[me] = false }
	:: atomic { alive[me] && termed[me] && how[me] == EXITS0 -> alive[me] = false }
	:: atomic { alive[me] && termed[me] && how[me] == EXITS1 && now >= termAt[me] + 1 -> alive[me] = false }
	:: atomic { alive[me] && termed[me] && how[me] == EXITS2 && now >= termAt[me] + 2 -> alive[me] = false }
	od
}

inline term(p) {
	if :: !termed[p] -> termed[p] = true; termAt[p] = now :: else fi
}

inline killAll() {
	killed[0] = true; killed[1] = true; killed[2] = true; killed[3] = true
}

/* the clock: a tick when nothing else can move, while tend runs; tend
 * must have finished before time passes GRACE + FINAL (invariant 6) */
active proctype Clock() {
end:	do
	:: timeout && !finished -> assert(now < GRACE + FINAL); now++
	od
}

/* tend's shutdown, started at 0 by SIGTERM: the job and the last level
 * (service 1) first, then service 0, then the sweep of the orphan;
 * SIGKILL of a service at its stop_timeout, of everything at the budget;
 * then at most FINAL more for the last exits */
active proctype Tend() {
	byte killAt;
	term(2);
	term(1);
	/* level 2: until service 1 has gone, its stop_timeout or the budget */
	do
	:: !alive[1] -> break
	:: now >= STOPT && !killed[1] -> killed[1] = true
	:: now >= GRACE -> break
	od;
	term(0);
	killAt = now + STOPT;
	do
	:: !alive[0] -> break
	:: now >= killAt && !killed[0] -> killed[0] = true
	:: now >= GRACE -> break
	od;
	/* the sweep: SIGTERM to what is left, SIGKILL after CLEANUP (or at
	 * the budget's end) */
	term(3);
	killAt = now + CLEANUP;
	if :: killAt > GRACE -> killAt = GRACE :: else fi;
	do
	:: !alive[0] && !alive[1] && !alive[2] && !alive[3] -> goto done
	:: now >= killAt -> break
	:: now >= GRACE -> break
	od;
	/* the final SIGKILL (the budget's, or the sweep's), then the bounded wait */
#ifndef NO_BUDGET_KILL
	killAll();
#else
	if :: now < GRACE -> killAll() :: else -> skip fi;
#endif
	killAt = now + FINAL;
	do
	:: !alive[0] && !alive[1] && !alive[2] && !alive[3] -> break
#ifndef NO_FINAL_BOUND
	:: now >= killAt -> break
#endif
	od;
done:
	finished = true;
	finishedAt = now;
	/* what is left may only be stuck in D state */
	assert((!alive[0] || how[0] == STUCK) && (!alive[1] || how[1] == STUCK) &&
	       (!alive[2] || how[2] == STUCK) && (!alive[3] || how[3] == STUCK)); /* invariant 11 */
	assert(finishedAt <= GRACE + FINAL) /* invariant 6 */
}

