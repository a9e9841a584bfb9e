/* idtable.h - records keyed by a 32-bit id in a fixed-bucket hash (base
 * layer): the stores' per-connection records. Like list.h, the node lives
 * in the owner's struct, so the table itself never allocates. */
#ifndef EARSHOT_IDTABLE_H
#define EARSHOT_IDTABLE_H

#include <stddef.h>
#include <stdint.h>

#define IDTABLE_BUCKETS 4096

struct idnode {
	struct idnode *next;
	uint32_t id;
};

struct idtable {
	struct idnode *b[IDTABLE_BUCKETS];
};

#define idtable_for_each(t, i, n) \
	for (size_t i = 0; i < IDTABLE_BUCKETS; i++) \
		for (struct idnode *n = (t)->b[i]; n; n = n->next)

static inline struct idnode **idtable_slot(struct idtable *t, uint32_t id)
{
	struct idnode **pp = &t->b[id % IDTABLE_BUCKETS];
	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

static inline struct idnode *idtable_find(struct idtable *t, uint32_t id)
{
	return *idtable_slot(t, id);
}

/* Link `n`, whose id is set and not in the table yet. */
static inline void idtable_add(struct idtable *t, struct idnode *n)
{
	struct idnode **pp = &t->b[n->id % IDTABLE_BUCKETS];
	n->next = *pp;
	*pp = n;
}

/* Unlink the node with `id`; it, or NULL. */
static inline struct idnode *idtable_remove(struct idtable *t, uint32_t id)
{
	struct idnode **pp = idtable_slot(t, id);
	struct idnode *n = *pp;
	if (n)
		*pp = n->next;
	return n;
}

/* Unlink any node (to empty the table): NULL when empty. `*from` starts
 * at 0 and keeps the scan where it was. */
static inline struct idnode *idtable_take(struct idtable *t, size_t *from)
{
	for (; *from < IDTABLE_BUCKETS; (*from)++) {
		struct idnode *n = t->b[*from];
		if (n) {
			t->b[*from] = n->next;
			return n;
		}
	}
	return NULL;
}

#endif
