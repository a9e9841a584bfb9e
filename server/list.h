/* list.h - intrusive doubly linked lists (base layer): the node lives in
 * the owner's struct, so linking and unlinking never allocate. */
#ifndef EARSHOT_LIST_H
#define EARSHOT_LIST_H

#include <stddef.h>

struct list { struct list *prev, *next; };

#define LIST_INIT(l) { &(l), &(l) }
#define list_entry(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define list_for_each(it, head) \
	for ((it) = (head)->next; (it) != (head); (it) = (it)->next)
#define list_for_each_safe(it, tmp, head) \
	for ((it) = (head)->next, (tmp) = (it)->next; (it) != (head); \
	     (it) = (tmp), (tmp) = (it)->next)

static inline void list_init(struct list *l) { l->prev = l->next = l; }
static inline int list_empty(const struct list *l) { return l->next == l; }
/* A node that is not on any list points at itself (after list_init or
 * list_del), so membership is a cheap check. */
static inline int list_linked(const struct list *n) { return n->next != n; }

static inline void list_insert_before(struct list *pos, struct list *n)
{
	n->prev = pos->prev;
	n->next = pos;
	pos->prev->next = n;
	pos->prev = n;
}

static inline void list_add_tail(struct list *head, struct list *n)
{
	list_insert_before(head, n);
}

static inline void list_del(struct list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

#endif
