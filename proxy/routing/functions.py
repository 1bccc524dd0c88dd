"""Names the classifier meets before a `(`: built-in functions, special functions, keywords.

Theory of operation
-------------------
A read that calls a function the server does not know natively calls a stored function
(or a UDF), and a stored function may write. The classifier therefore sorts every
``name(`` it sees in a read into one of:

* `PAREN_KEYWORDS`: not a call at all (``IN (``, ``OVER (``, ``AS (``, type names in
  ``CAST(x AS DECIMAL(10,2))`` ...);
* one of the *special* sets below, each with its own routing rule in
  `proxy.routing.classify`;
* `BUILTIN_FUNCTIONS`: a harmless MariaDB or MySQL native function;
* anything else: a stored function, sent to the writer.

An unqualified call always resolves to the native function when one exists, so a name
that is built in on *either* server is treated as built in; a qualified ``db.f(`` is
always a stored function. The lists come from MariaDB 11 ``sql/item_create.cc``,
``sql/sql_yacc.yy`` (functions with their own grammar rule), the spatial registry and
MySQL 8 ``sql/item_create.cc``. A name missing here costs performance (the read goes to
the writer), never safety; a name wrongly listed here could send a stored function to a
replica, so only add real built-ins.

Must stay in sync with: the special-function verdicts in `proxy.routing.classify`.
"""

from __future__ import annotations

__all__ = [
    "BUILTIN_FUNCTIONS",
    "LOCK_FUNCTIONS",
    "NAMED_LOCK_FUNCTIONS",
    "PAREN_KEYWORDS",
    "SAME_BACKEND_FUNCTIONS",
    "SEQUENCE_FUNCTIONS",
    "SERVER_SPECIFIC_FUNCTIONS",
]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.lower().split())


# Taking a named lock is session state that lives on one server: it pins the session.
NAMED_LOCK_FUNCTIONS = _words("get_lock")

# Other named-lock functions act on (or report) one server's lock table.
LOCK_FUNCTIONS = _words("release_lock release_all_locks is_free_lock is_used_lock")

# MariaDB sequences: reading the next value advances the sequence (a write).
SEQUENCE_FUNCTIONS = _words("nextval setval lastval")

# Answers about the previous statement on the same connection.
SAME_BACKEND_FUNCTIONS = _words("found_rows row_count")  # last_insert_id() is decided by arity

# Answers that depend on which server (or which server connection) runs them.
SERVER_SPECIFIC_FUNCTIONS = _words(
    """
    connection_id master_pos_wait master_gtid_wait source_pos_wait
    wait_for_executed_gtid_set wait_until_sql_thread_after_gtids binlog_gtid_pos
    wsrep_last_written_gtid wsrep_last_seen_gtid wsrep_sync_wait_upto_gtid
    ps_current_thread_id ps_thread_id
    """
)

# Words that may be followed by `(` without being a function call.
PAREN_KEYWORDS = _words(
    """
    all and any as asc between binary both by case collate columns cross current desc
    distinct distinctrow div else elseif end escape except exists filter following for
    force from full group having ignore in inner intersect interval into is join key
    lateral leading like limit minus natural nested not of offset on or order ordinality
    outer over partition path preceding range recursive regexp rlike row rows select set
    some sounds straight_join table then to trailing unbounded union unique use using
    value values when where window with xor returning within key index keys format
    against boolean mode language natural query expansion separator at zone escape
    """
    # type names: CAST(x AS DECIMAL(10,2)), JSON_TABLE(... COLUMNS (a VARCHAR(10) ...))
    """
    bigint bit blob char character charset dec decimal double fixed float float4 float8
    int int1 int2 int3 int4 int8 integer long mediumint middleint nchar numeric nvarchar
    precision real signed smallint text tinyint unsigned varbinary varchar varcharacter
    year time timestamp datetime date enum json inet4 inet6 uuid vector
    """
)

_STRING = """
    ascii bin bit_length char_length character_length chr concat concat_ws
    concat_operator_oracle elt export_set extractvalue field find_in_set format
    from_base64 hex insert instr lcase left length lengthb load_file locate lower lpad
    lpad_oracle ltrim ltrim_oracle make_set mid natural_sort_key oct octet_length ord
    position quote repeat replace replace_oracle reverse right rpad rpad_oracle rtrim
    rtrim_oracle sformat soundex space strcmp substr substr_oracle substring
    substring_index to_base64 to_char trim trim_oracle ucase unhex updatexml upper
    weight_string regexp_instr regexp_like regexp_replace regexp_substr char
    random_bytes
"""
_NUMERIC = """
    abs acos asin atan atan2 ceil ceiling conv cos cot crc32 crc32c degrees exp floor ln
    log log10 log2 mod pi pow power radians rand round sign sin sqrt tan truncate
"""
_DATETIME = """
    adddate addtime add_months convert_tz curdate current_date current_time
    current_timestamp curtime date_add date_format date_sub datediff day dayname
    dayofmonth dayofweek dayofyear extract from_days from_unixtime get_format hour
    last_day localtime localtimestamp makedate maketime microsecond minute month
    monthname now period_add period_diff quarter sec_to_time second str_to_date subdate
    subtime sysdate time_format time_to_sec timediff timestampadd timestampdiff to_days
    to_seconds unix_timestamp utc_date utc_time utc_timestamp week weekday weekofyear
    yearweek format_pico_time format_bytes
"""
_AGGREGATE_WINDOW = """
    avg bit_and bit_or bit_xor count group_concat json_arrayagg json_objectagg max min
    std stddev stddev_pop stddev_samp sum var_pop var_samp variance any_value grouping
    cume_dist dense_rank first_value lag last_value lead median nth_value ntile
    percent_rank percentile_cont percentile_disc rank row_number
"""
_CONTROL_FLOW = """
    if ifnull nullif nvl nvl2 coalesce greatest least isnull decode decode_oracle
"""
_INFORMATION = """
    benchmark coercibility collation current_role current_user database schema
    session_user system_user user version icu_version roles_graphml decode_histogram
    default last_insert_id found_rows row_count rownum sleep uuid uuid_short sys_guid
    uuid_v4 uuid_v7 name_const
"""
_CAST_MISC = """
    cast convert match inet_aton inet_ntoa inet6_aton inet6_ntoa is_ipv4 is_ipv6
    is_ipv4_compat is_ipv4_mapped is_uuid bin_to_uuid uuid_to_bin gtid_subset
    gtid_subtract statement_digest statement_digest_text
"""
_CRYPTO = """
    aes_decrypt aes_encrypt compress uncompress uncompressed_length des_decrypt
    des_encrypt encode encrypt md5 old_password password sha sha1 sha2 kdf
    validate_password_strength
"""
_JSON = """
    json_array json_array_append json_array_insert json_array_intersect json_compact
    json_contains json_contains_path json_depth json_detailed json_equals json_exists
    json_extract json_insert json_key_value json_keys json_length json_loose json_merge
    json_merge_patch json_merge_preserve json_normalize json_object
    json_object_filter_keys json_object_to_array json_overlaps json_pretty json_query
    json_quote json_remove json_replace json_schema_valid json_schema_validation_report
    json_search json_set json_storage_free json_storage_size json_table json_type
    json_unquote json_valid json_value
"""
_DYNAMIC_COLUMNS = """
    column_add column_check column_create column_delete column_exists column_get
    column_json column_list
"""
_VECTOR = """
    vec_distance vec_distance_cosine vec_distance_euclidean vec_fromtext vec_totext
"""
_SPATIAL = """
    point linestring polygon multipoint multilinestring multipolygon geometrycollection
    area asbinary astext aswkb aswkt boundary buffer centroid contains convexhull crosses
    dimension disjoint endpoint envelope equals exteriorring geomcollfromtext
    geomcollfromwkb geometrycollectionfromtext geometrycollectionfromwkb
    geometryfromtext geometryfromwkb geometryn geometrytype geomfromtext geomfromwkb
    glength interiorringn intersects isclosed isempty isring issimple linefromtext
    linefromwkb linestringfromtext linestringfromwkb mbrcontains mbrcoveredby mbrcovers
    mbrdisjoint mbrequal mbrequals mbrintersects mbroverlaps mbrtouches mbrwithin
    mlinefromtext mlinefromwkb mpointfromtext mpointfromwkb mpolyfromtext mpolyfromwkb
    multilinestringfromtext multilinestringfromwkb multipointfromtext multipointfromwkb
    multipolygonfromtext multipolygonfromwkb numgeometries numinteriorrings numpoints
    overlaps pointfromtext pointfromwkb pointn pointonsurface polyfromtext polyfromwkb
    polygonfromtext polygonfromwkb srid startpoint touches within x y
    st_area st_asbinary st_asgeojson st_astext st_aswkb st_aswkt st_boundary st_buffer
    st_buffer_strategy st_centroid st_collect st_contains st_convexhull st_crosses
    st_difference st_dimension st_disjoint st_distance st_distance_sphere st_endpoint
    st_envelope st_equals st_exteriorring st_frechetdistance st_geohash
    st_geomcollfromtext st_geomcollfromtxt st_geomcollfromwkb
    st_geometrycollectionfromtext st_geometrycollectionfromwkb st_geometryfromtext
    st_geometryfromwkb st_geometryn st_geometrytype st_geomfromgeojson st_geomfromtext
    st_geomfromwkb st_hausdorffdistance st_interiorringn st_intersection st_intersects
    st_isclosed st_isempty st_isring st_issimple st_isvalid st_latfromgeohash
    st_latitude st_length st_linefromtext st_linefromwkb st_lineinterpolatepoint
    st_lineinterpolatepoints st_linestringfromtext st_linestringfromwkb
    st_longfromgeohash st_longitude st_makeenvelope st_mlinefromtext st_mlinefromwkb
    st_mpointfromtext st_mpointfromwkb st_mpolyfromtext st_mpolyfromwkb
    st_multilinestringfromtext st_multilinestringfromwkb st_multipointfromtext
    st_multipointfromwkb st_multipolygonfromtext st_multipolygonfromwkb
    st_numgeometries st_numinteriorring st_numinteriorrings st_numpoints st_overlaps
    st_pointatdistance st_pointfromgeohash st_pointfromtext st_pointfromwkb st_pointn
    st_pointonsurface st_polyfromtext st_polyfromwkb st_polygonfromtext
    st_polygonfromwkb st_relate st_simplify st_srid st_startpoint st_swapxy
    st_symdifference st_touches st_transform st_union st_validate st_within st_x st_y
"""

# Native functions without side effects worth routing for. SLEEP and BENCHMARK only
# cost time; the special sets above are listed too, since they are native.
BUILTIN_FUNCTIONS = (
    _words(
        _STRING
        + _NUMERIC
        + _DATETIME
        + _AGGREGATE_WINDOW
        + _CONTROL_FLOW
        + _INFORMATION
        + _CAST_MISC
        + _CRYPTO
        + _JSON
        + _DYNAMIC_COLUMNS
        + _VECTOR
        + _SPATIAL
    )
    | NAMED_LOCK_FUNCTIONS
    | LOCK_FUNCTIONS
    | SEQUENCE_FUNCTIONS
    | SAME_BACKEND_FUNCTIONS
    | SERVER_SPECIFIC_FUNCTIONS
)
