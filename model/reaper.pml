/*
 * reaper.pml: the reaper and its child handles (reaper/), against a
 * kernel that recycles pids. See model/README.md for the mapping to the
 * Go code and the bounds.
 *
 * Processes: Kernel (exits, orphans reparented to tend or to the unit
 * helper, a subreaper whose own exit hands its children to tend), Reaper
 * (the one wait4 loop: reaper.Reaper.Run), Helper (the unit helper's own
 * reaping), Loop (the owner: starts, signals and takes exits: supervisor's
 * loop). The pid space is NPID pids and the loop makes
 * NSTART starts, more than the pids, so a pid is always reused.
 *
 * Variants (spin -D...): each weakens one rule the way a first version
 * of tend did, and must fail:
 *   SIGNAL_BY_PID    a signal goes out if *some* registration has the
 *                    pid, not this handle's (invariant 3)
 *   EXIT_BY_PID      the loop credits an exit to its live handle with
 *                    that pid number (invariant 2)
 *   LATE_CLEAR       the reaper clears its SIGCHLD flag after its wait4
 *                    pass, not before (invariant 4: a zombie left)
 *   WITNESS_NO_REUSE asserts no pid is ever allocated twice: it must
 *                    fail, or the bounds are too small for reuse
 *   REAP_ONLY_REGISTERED  the reaper leaves zombies nobody registered
 *                    (orphans) alone (invariant 4)
 *   HELPER_NO_REAP   the unit helper, a subreaper, does not reap the
 *                    orphans reparented to it (invariant 4)
 */

#ifndef NPID
#define NPID 3
#endif
#ifndef NSTART
#define NSTART 4
#endif
#ifndef NORPHAN
#define NORPHAN 1
#endif

mtype = { FREE, ALIVE, ZOMBIE };

/* the kernel */
mtype pstate[NPID + 1] = FREE; /* by pid, 1..NPID */
byte  pinc[NPID + 1];     /* the incarnation holding the pid: unique per fork */
byte  nextinc = 1;
byte  lastpid = 0;        /* allocation goes round from the last pid (ns_last_pid) */
bool  everused[NPID + 1];
bool  sigchld = false;    /* pending SIGCHLD: signals coalesce */
byte  orphansleft = NORPHAN;
/* parents: 0 is tend; otherwise the pid of the unit helper (the first
 * child tend starts is a subreaper, PR_SET_CHILD_SUBREAPER, as
 * unit/helper is) that a reparented orphan went to */
byte  ppid[NPID + 1];
byte  helper = 0;         /* the helper's pid while it lives, 0: none */
bool  helperSig = false;  /* the helper's own SIGCHLD */

/* the reaper's table, under its lock */
bool  lock = false;
byte  reg[NPID + 1];      /* pid -> handle+1, 0: nobody's (an orphan) */

/* handles (reaper.Child) */
byte  hpid[NSTART];
byte  hinc[NSTART];
bool  hreaped[NSTART];    /* set by the reaper under the lock */
bool  hstarted[NSTART];
byte  hexits[NSTART];     /* exits the owner took */
byte  started = 0;

byte  orphansreaped = 0;
chan  exits = [NSTART] of { byte, byte, byte };  /* handle, pid, incarnation */

inline acquire() { atomic { !lock -> lock = true } }
inline release() { lock = false }

/* fork: the next free pid after lastpid, round the space; p = 0 when
 * none is free (EAGAIN). */
inline alloc(p, k) {
	atomic { /* the kernel allocates in one step */
	k = 0;
	p = 0;
	do
	:: k < NPID ->
		if
		:: pstate[((lastpid + k) % NPID) + 1] == FREE ->
			p = ((lastpid + k) % NPID) + 1;
			break
		:: else -> k++
		fi
	:: else -> break
	od;
	if
	:: p != 0 ->
#ifdef WITNESS_NO_REUSE
		assert(!everused[p]);
#endif
		everused[p] = true;
		lastpid = p;
		pstate[p] = ALIVE;
		pinc[p] = nextinc;
		nextinc++
	:: else -> skip
	fi
	}
}

/* The kernel: any live process may exit (its parent gets SIGCHLD), and a
 * grandchild whose parent died is reparented to tend: a child nobody
 * registered. */
/* A process exits: its parent gets SIGCHLD; a subreaper that exits hands
 * its children (zombies included) on to tend, which gets SIGCHLD for the
 * zombies among them. */
#define EXIT(P) :: atomic { pstate[P] == ALIVE -> pstate[P] = ZOMBIE; \
	if :: ppid[P] == 0 -> sigchld = true :: else -> helperSig = true fi; \
	if \
	:: P == helper -> helper = 0; \
		for (r : 1 .. NPID) { if :: ppid[r] == P -> ppid[r] = 0; \
			if :: pstate[r] == ZOMBIE -> sigchld = true :: else fi \
		:: else fi } \
	:: else \
	fi }

active proctype Kernel() {
	byte q;
	byte k;
	byte r;
end:	do
	EXIT(1)
	EXIT(2)
#if NPID > 2
	EXIT(3)
#endif
	/* a grandchild reparented: to tend, or to the helper if it lives */
	:: atomic { orphansleft > 0 -> alloc(q, k); orphansleft--;
		if :: q != 0 -> ppid[q] = 0 :: q != 0 && helper != 0 -> ppid[q] = helper :: else fi }
	od
}

/* The reaper: on SIGCHLD, under the lock, wait4(-1, WNOHANG) until no
 * zombie is left; a registered child's handle is marked reaped and its
 * exit queued for its owner, the registration dropped; anything else is
 * an orphan. */
active proctype Reaper() {
	byte p;
	byte h;
end:	do
	:: sigchld ->
#ifndef LATE_CLEAR
		sigchld = false;
#endif
		acquire();
		p = 1;
		do
		:: p <= NPID ->
			if
#ifdef REAP_ONLY_REGISTERED
			:: pstate[p] == ZOMBIE && ppid[p] == 0 && reg[p] != 0 ->
#else
			:: pstate[p] == ZOMBIE && ppid[p] == 0 -> /* every child of tend's */
#endif
				h = reg[p];
				if
				:: h != 0 ->
					hreaped[h - 1] = true;
					reg[p] = 0;
					exits ! h - 1, p, pinc[p]
				:: else -> orphansreaped++
				fi;
				pstate[p] = FREE
			:: else -> skip
			fi;
			p++
		:: else -> break
		od;
#ifdef LATE_CLEAR
		sigchld = false;
#endif
		release()
	od
}

/* The unit helper reaps its own children (the orphans reparented to it);
 * what it leaves when it exits goes to tend (EXIT). */
active proctype Helper() {
	byte c;
end:	do
	:: atomic { helperSig && helper != 0 ->
		helperSig = false;
#ifndef HELPER_NO_REAP
		for (c : 1 .. NPID) {
			if :: pstate[c] == ZOMBIE && ppid[c] == helper && c != helper -> pstate[c] = FREE; ppid[c] = 0 :: else fi
		}
#endif
		}
	:: atomic { helperSig && helper == 0 -> helperSig = false }
	od
}

/* Signal through handle h: delivered only while this registration is
 * live (reaper.Child.kill under the lock). */
inline signal(h) {
	acquire();
#ifdef SIGNAL_BY_PID
	if
	:: reg[hpid[h]] != 0 ->
#else
	if
	:: !hreaped[h] ->
#endif
		/* kill(2) reaches whoever holds the number now: it must be
		 * this handle's process (a zombie of it counts). */
		assert(pstate[hpid[h]] != FREE && pinc[hpid[h]] == hinc[h]) /* invariant 3 */
	:: else -> skip /* ErrNotRunning */
	fi;
	release()
}

/* The loop: starts NSTART children (fork+exec and registration under the
 * lock), signals any it has not seen exit, at any time (a timeout, an
 * API request), and takes exits. */
#define SIGNAL(H) :: hstarted[H] && hexits[H] == 0 -> signal(H)

active proctype Loop() {
	byte p;
	byte k;
	byte h;
	byte xh;
	byte xp;
	byte xi;
end:	do
	:: started < NSTART ->
		acquire();
		alloc(p, k);
		if
		:: p != 0 ->
			hpid[started] = p;
			hinc[started] = pinc[p];
			hstarted[started] = true;
			reg[p] = started + 1;
			ppid[p] = 0;
			if :: started == 0 -> helper = p :: else fi /* the unit helper */
		:: else -> skip /* EAGAIN: the start fails, nothing registered */
		fi;
		started++;
		release()
	SIGNAL(0)
	SIGNAL(1)
	SIGNAL(2)
#if NSTART > 3
	SIGNAL(3)
#endif
	:: exits ? xh, xp, xi ->
#ifdef EXIT_BY_PID
		/* credit by number: the newest live handle with that pid */
		h = NSTART;
		do
		:: h > 0 ->
			h--;
			if
			:: hstarted[h] && hexits[h] == 0 && hpid[h] == xp -> break
			:: else -> skip
			fi
		:: else -> break
		od;
		xh = h;
#endif
		/* invariant 2: the exit is its own child's */
		assert(hinc[xh] == xi); /* invariant 2: the exit is its own child's */
		hexits[xh]++
	od
}

/* Once nothing can move: every started child's exit taken exactly once,
 * every orphan reaped, no zombie left (invariants 2 and 4). */
active proctype Quiescent() {
	byte i;
	timeout ->
	i = 0;
	do
	:: i < NSTART ->
		/* invariant 2: no exit lost, none taken twice */
		assert(!hstarted[i] || hexits[i] == 1 || (hexits[i] == 0 && pstate[hpid[i]] == ALIVE && pinc[hpid[i]] == hinc[i]));
		i++
	:: else -> break
	od;
	i = 1;
	do
	:: i <= NPID -> assert(pstate[i] != ZOMBIE); i++ /* invariant 4 */
	:: else -> break
	od
}
