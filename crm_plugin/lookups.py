"""`field__any_of=[...]`: the same rows as `__in`, sent to PostgreSQL as one array parameter.

A scoring chunk filters seven queries by its 2,000 customer ids. As `IN (%s, %s, ...)` Django and
psycopg spent about 7 ms per query building and splitting 2,000 placeholders; `= ANY(%s)` with the
ids as one array took about 1.5 ms. Integer ids skip Django's value-by-value preparation and go as
one array literal (`pg_array`). Other databases get the plain IN.
"""
from django.core.exceptions import EmptyResultSet
from django.db.models import Field, IntegerField
from django.db.models.fields.related import ForeignObject
from django.db.models.fields.related_lookups import RelatedIn
from django.db.models.lookups import In


def pg_array(values) -> str:
    """A PostgreSQL array literal (`{1,2,3}`) of ints, floats, Decimals or strings (None -> NULL), for a
    `%s::type[]` parameter.

    psycopg adapts a list element by element (~3 ms per 2,000 on a 2-core AVX2 machine, and a
    scoring chunk sends 15 such arrays); one join is a tenth of that. Strings are quoted and escaped,
    numbers written as Python writes them (floats round-trip; nan and inf are PostgreSQL's too).
    """
    def one(v) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(v) if isinstance(v, float) else str(v)

    return "{" + ",".join(map(one, values)) + "}"


def _integer_column(field) -> bool:
    target = getattr(field, "target_field", None) if field.is_relation else field
    return isinstance(target, IntegerField)  # AutoField and BigAutoField included


class _AnyOnPostgres:
    lookup_name = "any_of"

    def _plain_ints(self) -> bool:
        return (isinstance(self.rhs, (list, tuple)) and all(type(v) is int for v in self.rhs)
                and _integer_column(self.lhs.output_field))

    def get_prep_lookup(self):
        if self._plain_ints():  # already what the column holds: nothing to prepare one by one
            return list(self.rhs)
        return super().get_prep_lookup()

    def as_postgresql(self, compiler, connection):
        if not self.rhs_is_direct_value() or getattr(self.lhs, "targets", (None,))[1:]:
            return self.as_sql(compiler, connection)  # subqueries, composite keys: the plain IN
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = [value for value in self.rhs if value is not None]  # IN never matches NULL either
        if not values:
            raise EmptyResultSet
        if self._plain_ints():
            column_type = self.lhs.output_field.cast_db_type(connection)  # a foreign key's: its target's
            return f"{lhs} = ANY(%s::{column_type}[])", (*lhs_params, pg_array(values))
        return f"{lhs} = ANY(%s)", (*lhs_params, values)


@Field.register_lookup
class AnyOf(_AnyOnPostgres, In):
    pass


@ForeignObject.register_lookup
class RelatedAnyOf(_AnyOnPostgres, RelatedIn):
    pass
